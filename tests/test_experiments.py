"""Named experiments: the config overlay (pipeline/configoverlay.py) and the plans it gives (rules/experiments.smk):
results beside the default run's, stores shared wherever the experiment computes them alike."""
import re

import pytest
import yaml

from pipeline.configoverlay import apply_overlay

from .test_workflow import TINY_CONFIG, copy_workflow, jobs_planned, planned_resources, snakemake

BASE = {"datasets": {"a": {"format": "prcc", "root": "r", "stages": {"silhouettes": {"backend": "groundtruth"},
                                                                     "faces": {"backend": "retinaface"}}}},
        "stages": {"keypoints": {"backend": "mediapipe"}, "silhouettes": {"backend": "grabcut"}},
        "backends": {"silhouettes": {"grabcut": {"params": {"iterations": 5, "margin": 0.05},
                                                 "inputs": ["keypoints"]}}},
        "overrides": {"cal": ["epochs=3"]}}


def test_an_overlay_changes_what_it_names_and_nothing_else():
    merged = apply_overlay(BASE, {"backends": {"silhouettes": {"grabcut": {"params": {"iterations": 2},
                                                                           "inputs": []}}},
                                  "overrides": {"cal": ["seed=4"], "3dsl": ["epochs=1"]},
                                  "stages": {"silhouettes": {"backend": "sam"}}})
    grabcut = merged["backends"]["silhouettes"]["grabcut"]
    assert grabcut == {"params": {"iterations": 2, "margin": 0.05}, "inputs": []}  # merged key by key; a list replaced
    assert merged["overrides"] == {"cal": ["epochs=3", "seed=4"], "3dsl": ["epochs=1"]}  # added after, so they win
    assert merged["stages"]["silhouettes"] == {"backend": "sam"}
    # the experiment's stage applies to every dataset, over the dataset's own choice; the rest of that stays
    assert merged["datasets"]["a"]["stages"] == {"faces": {"backend": "retinaface"}}
    assert BASE["backends"]["silhouettes"]["grabcut"]["params"]["iterations"] == 5  # the config is not changed
    assert BASE["datasets"]["a"]["stages"]["silhouettes"] == {"backend": "groundtruth"}
    assert apply_overlay(BASE, {}) == BASE


def test_an_overlay_may_set_only_what_an_experiment_changes():
    with pytest.raises(ValueError, match=r"sets \['datasets'\]; it may set only stages, backends"):
        apply_overlay(BASE, {"datasets": {"a": {"root": "elsewhere"}}})


EXPERIMENTS = {"gt": {"stages": {"silhouettes": {"backend": "groundtruth"}}},
               "it3": {"backends": {"silhouettes": {"grabcut": {"params": {"iterations": 3}}}}},
               "reseed": {"overrides": {"3dsl": ["seed=5"]}}}


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("experiments"))
    config = {**TINY_CONFIG, "methods": ["baseline", "cal", "3dsl"], "experiments": EXPERIMENTS}
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    return work


def shell_lines(proc, rule: str) -> list[str]:
    """The shell commands a dry run (-p) prints for the jobs of `rule`."""
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout)
    return [line.removeprefix("Shell command: ") for b in blocks if re.match(rf"(?:local)?rule {rule}:", b.strip())
            for line in b.splitlines() if line.startswith("Shell command: ")]


@pytest.mark.slow
def test_experiments_share_the_stores_they_compute_alike(plans):
    runs = [f"results/tiny/3dsl/{e}/metrics.json" for e in ("", *EXPERIMENTS)]
    proc = snakemake(plans, "-n", "-p", *[r.replace("//", "/") for r in runs], "--configfile", "tiny.yaml")
    planned = jobs_planned(proc)
    # keypoints once for all; silhouettes: the default's GrabCut, the truth (gt) and GrabCut at 3 iterations (it3);
    # reseed changes only the training, so it reads the default's stores
    assert planned["stage_merge"] == 4 and planned["train"] == 1 and planned["train_experiment"] == 3
    merges = {re.search(r"--out (\S+)", line).group(1) for line in shell_lines(proc, "stage_merge")}
    assert merges == {"data/derived/tiny/keypoints/mediapipe.h5", "data/derived/tiny/silhouettes/grabcut.h5",
                      "data/derived/tiny/silhouettes/groundtruth.h5", "data/derived/tiny/silhouettes/grabcut@it3.h5"}
    trains = {re.search(r"--out (\S+)", line).group(1): line for line in shell_lines(proc, "train_experiment")}
    assert "--store silhouettes=data/derived/tiny/silhouettes/groundtruth.h5" in trains["results/tiny/3dsl/gt"]
    assert "--store silhouettes=data/derived/tiny/silhouettes/grabcut@it3.h5" in trains["results/tiny/3dsl/it3"]
    assert "--store silhouettes=data/derived/tiny/silhouettes/grabcut.h5" in trains["results/tiny/3dsl/reseed"]
    assert "--set seed=5" in trains["results/tiny/3dsl/reseed"] and "--set" not in trains["results/tiny/3dsl/gt"]
    shards = [line for line in shell_lines(proc, "stage_shard") if "grabcut@it3.shards" in line]
    assert len(shards) == 2 and all('"iterations": 3' in s and "--backend grabcut " in s for s in shards)
    evaluations = shell_lines(proc, "evaluate_experiment")
    assert {re.search(r"--experiment (\S+)", line).group(1) for line in evaluations} == set(EXPERIMENTS)


@pytest.mark.slow
def test_a_store_read_by_an_experiment_s_store_makes_that_one_its_own_too(plans):
    """An experiment that changes the keypoints changes GrabCut's seeds: GrabCut's store becomes the experiment's
    although GrabCut's own settings are the default's."""
    (plans / "kp.yaml").write_text(yaml.safe_dump({"experiments": {
        "kp": {"backends": {"keypoints": {"mediapipe": {"params": {"upscale": 1.5}}}}}}}))
    proc = snakemake(plans, "-n", "-p", "results/tiny/3dsl/kp/metrics.json", "--configfile", "tiny.yaml", "kp.yaml")
    merges = {re.search(r"--out (\S+)", line).group(1) for line in shell_lines(proc, "stage_merge")}
    assert merges == {"data/derived/tiny/keypoints/mediapipe@kp.h5", "data/derived/tiny/silhouettes/grabcut@kp.h5"}
    shards = [line for line in shell_lines(proc, "stage_shard") if "grabcut@kp.shards" in line]
    assert shards and all("--input-store data/derived/tiny/keypoints/mediapipe@kp.h5" in s for s in shards)


@pytest.mark.slow
@pytest.mark.parametrize(("overlay", "target", "expected"), [
    ({"x": {"backends": {"silhouettes": {"grabcut": {"params": {"iterations": "many"}}}}}}, "results/tiny/3dsl/x",
     "error: experiments.x: silhouettes backend 'grabcut': parameter 'iterations' is 'many'"),
    ({"x": {"overrides": {"3dsl": ["nosuchkey=1"]}}}, "results/tiny/3dsl", "error: experiments.x: 3dsl.yaml override: "
                                                                            "unknown key 'nosuchkey'"),
    ({"x": {"scales": {"tiny": {"nosuch": "demo"}}}}, "results/tiny/3dsl", "error: scales.tiny names ['nosuch']"),
    ({}, "results/tiny/3dsl/nope", None),  # not an experiment: no rule makes it
])
def test_a_bad_experiment_stops_the_plan_naming_it(plans, overlay, target, expected):
    (plans / "bad.yaml").write_text(yaml.safe_dump({"experiments": overlay} if overlay else {}))
    proc = snakemake(plans, "-n", f"{target}/metrics.json", "--configfile", "tiny.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0
    if expected:
        assert proc.stderr.strip().splitlines()[-1].startswith(expected), proc.stderr[-1500:]
    else:
        out = proc.stdout + proc.stderr
        assert "MissingRuleException" in out and "results/tiny/3dsl/nope/metrics.json" in out, out[-1500:]


@pytest.mark.slow
def test_a_target_naming_an_unknown_experiment_stops_the_plan(plans):
    (plans / "bad.yaml").write_text(yaml.safe_dump({"targets": ["tiny/3dsl/nope"]}))
    proc = snakemake(plans, "-n", "--configfile", "tiny.yaml", "bad.yaml", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == ("error: experiment 'nope' is not configured under experiments: "
                                                    "(configured: ['gt', 'it3', 'reseed'])")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["figures", "train_figures", "checkpoints", "seed2", "a b"])
def test_an_experiment_cannot_take_the_name_of_a_run_s_folder(plans, name):
    (plans / "bad.yaml").write_text(yaml.safe_dump({"experiments": {name: {"overrides": {"cal": ["seed=1"]}}}}))
    proc = snakemake(plans, "-n", "--configfile", "tiny.yaml", "bad.yaml", check=False)
    out = proc.stdout + proc.stderr  # Snakemake prints a schema error on stdout
    assert proc.returncode == 1 and "experiments" in out and repr(name) in out, out[-800:]


@pytest.mark.slow
def test_the_cluster_profile_sizes_an_experiment_s_jobs_as_the_default_s(plans):
    # --cores: a dry run otherwise caps every job's threads at 1
    proc = snakemake(plans, "--workflow-profile", "profiles/slurm", "-n", "-p", "--cores", "16",
                     "results/tiny/3dsl/it3/metrics.json", "--configfile", "tiny.yaml")
    res = planned_resources(proc)
    train, evaluate = res["train_experiment"][0], res["evaluate_experiment"][0]
    assert train["mem_mb"] == "32000" and train["runtime"] == "1440" and train["cpus_per_task"] == "8"
    assert evaluate["mem_mb"] == "16000" and evaluate["cpus_per_task"] == "8"
    assert all("--threads 8" in line for rule in ("train_experiment", "evaluate_experiment")
               for line in shell_lines(proc, rule))
