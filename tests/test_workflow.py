"""The Snakemake workflow: schema, lint, dry runs, a tiny end-to-end run and what reruns after a change."""
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import pytest
import yaml

from .conftest import REPO

TINY_CONFIG = {
    "datasets": {"tiny": {"format": "prcc", "root": "data/raw/tiny", "scale": "tiny",
                          "synthetic": {"seed": 1, "train_ids": 6, "test_ids": 4, "val_ids": 1,
                                        "images_per_camera": 2}}},
    "methods": ["baseline", "cal"],
    "device": "cpu",
    "targets": ["tiny/cal"],
}


def snakemake(workdir, *args, check=True, timeout=900, torch_home=None):
    """Snakemake in `workdir`; torch's caches (the ImageNet weights the plan checks) in `torch_home`, by default
    `workdir`/torch, where copy_workflow put placeholders."""
    # rules call `python -m ...`: put this interpreter's environment first, as an activated venv does
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               TORCH_HOME=str(torch_home or workdir / "torch"))
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def jobs_planned(proc) -> dict:
    """Parse the 'Job stats' table of a dry run."""
    counts, inside = {}, False
    for line in proc.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            inside = True
            continue
        if inside:
            parts = line.split()
            if not parts or parts[0] == "total":
                break
            if parts[0].startswith("-"):
                continue
            counts[parts[0]] = int(parts[1])
    return counts


# the ImageNet files the shipped methods load at their published scales (trainer/pretrained.py), under TORCH_HOME
PRETRAINED = ("hub/checkpoints/resnet50-0676ba61.pth", "checkpoints/osnet_x1_0_imagenet.pth")


def copy_workflow(work):
    """The workflow's files (Snakefile, rules, config, envs, profiles, report captions) copied into `work`, and a
    placeholder for each ImageNet weights file under `work`/torch: the plan checks they are there (a test of
    that gives another TORCH_HOME); no test trains from them."""
    for name in ("Snakefile", "rules", "config", "envs", "profiles", "report"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    pretrained_placeholders(work / "torch")
    return work


def pretrained_placeholders(torch_home):
    for name in PRETRAINED:
        (torch_home / name).parent.mkdir(parents=True, exist_ok=True)
        (torch_home / name).write_bytes(b"placeholder")
    return torch_home


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    return work


@pytest.mark.slow
def test_lint_is_clean():
    proc = snakemake(REPO, "--lint")
    assert "Lints for" not in proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_dry_run_resolves_the_whole_chain(workflow):
    proc = snakemake(workflow, "-n", "results/tiny/cal/metrics.json", "--configfile", "tiny.yaml")
    assert jobs_planned(proc) == {"synthetic_dataset": 1, "lists": 1, "pack": 1, "train": 1, "evaluate": 1}


REAL = {d: c for d, c in yaml.safe_load((REPO / "config/config.yaml").read_text())["datasets"].items()
        if "synthetic" not in c}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(REAL))
def test_real_dataset_targets_resolve_from_the_default_config(dataset, tmp_path):
    from pipeline.datasets import layout_dir

    proc = snakemake(REPO, "-n", f"results/{dataset}/baseline/metrics.json", check=False,
                     torch_home=pretrained_placeholders(tmp_path))
    # the raw data is absent here: the plan must name the dataset's layout folder as the missing input
    assert f"{REAL[dataset]['root']}/{layout_dir(REAL[dataset]['format'])}" in proc.stdout + proc.stderr


NO_CLOTHES_FORMATS = {"celebreid", "celebreid_light", "market1501", "dukemtmcreid", "msmt17", "msmt17v2"}


@pytest.mark.slow
def test_every_real_dataset_plans_its_whole_chain_once_its_layout_exists(workflow):
    """With each dataset's layout folder present, one dry run plans lists -> pack -> train -> evaluate for
    every configured dataset: CAL where the dataset has clothes labels, the baseline where it has none."""
    from pipeline.datasets import layout_dir

    for cfg in REAL.values():
        (workflow / cfg["root"] / layout_dir(cfg["format"])).mkdir(parents=True, exist_ok=True)
    targets = [f"results/{d}/{'baseline' if c['format'] in NO_CLOTHES_FORMATS else 'cal'}/metrics.json"
               for d, c in REAL.items()]
    proc = snakemake(workflow, "-n", *targets)
    n = len(REAL)
    assert jobs_planned(proc) == {"lists": n, "pack": n, "train": n, "evaluate": n}
    assert {"ccvid", "deepchange", "last", "nkup"} <= set(REAL)


@pytest.mark.slow
def test_schema_errors_name_the_bad_key(workflow):
    bad = json.loads(json.dumps(TINY_CONFIG))
    bad["datasets"]["tiny"]["format"] = "prccc"
    (workflow / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = snakemake(workflow, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "prccc" in out and "format" in out


@pytest.mark.slow
def test_tiny_end_to_end_then_only_changed_steps_rerun(workflow):
    snakemake(workflow, "--cores", "2", "results/tiny/cal/metrics.json", "--configfile", "tiny.yaml")
    report = json.loads((workflow / "results/tiny/cal/metrics.json").read_text())
    assert {"SC", "CC", "SC_single_shot", "CC_single_shot"} == set(report["protocols"])
    assert report["protocols"]["CC"]["num_valid_queries"] > 0
    for log in ("synthetic.log", "lists.log", "pack.log", "cal/train.log", "cal/evaluate.log"):
        assert (workflow / "logs/tiny" / log).is_file(), log
    assert (workflow / "data/raw/tiny/groundtruth/groundtruth.h5").is_file()

    nothing = snakemake(workflow, "-n", "results/tiny/cal/metrics.json", "--configfile", "tiny.yaml")
    assert jobs_planned(nothing) == {}

    changed = json.loads(json.dumps(TINY_CONFIG))
    changed["overrides"] = {"cal": ["epochs=1"]}
    (workflow / "changed.yaml").write_text(yaml.safe_dump(changed))
    proc = snakemake(workflow, "-n", "results/tiny/cal/metrics.json", "--configfile", "changed.yaml")
    assert jobs_planned(proc) == {"train": 1, "evaluate": 1}


def planned_resources(proc) -> dict[str, list[dict]]:
    """rule -> the resources of each of its jobs, from a dry run's job listing."""
    found: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and res:
            pairs = (kv.split("=", 1) for kv in res.group(1).split(", "))
            found.setdefault(head.group(1), []).append({k: v for k, v in pairs})
    return found


@pytest.mark.slow
def test_slurm_profile_sizes_each_rule_and_asks_gpus_where_they_run(workflow):
    """As a workflow profile, profiles/slurm's per-rule resources reach the jobs (with --profile, Snakemake also
    reads profiles/default, whose settings would replace them); the GPU follows the configured device."""
    proc = snakemake(workflow, "--workflow-profile", "profiles/slurm", "-n", "results/tiny/baseline/metrics.json",
                     "data/derived/tiny/keypoints/mediapipe.h5", "--configfile", "tiny.yaml",
                     "--config", "device=auto")
    res = planned_resources(proc)
    train, shard = res["train"][0], res["stage_shard"][0]
    assert train["gpu"] == "1" and train["mem_mb"] == "32000" and train["runtime"] == "1440"
    assert res["evaluate"][0]["gpu"] == "1"
    assert shard.get("gpu", "0") == "0" and shard["runtime"] == "240"  # mediapipe: a CPU backend
    # no partition is fixed per rule: the plugin picks one from partitions.yaml by what the job asks for
    assert not any("slurm_partition" in job for jobs in res.values() for job in jobs)
    on_cpu = planned_resources(snakemake(workflow, "--workflow-profile", "profiles/slurm", "-n",
                                         "results/tiny/baseline/metrics.json", "--configfile", "tiny.yaml"))
    assert on_cpu["train"][0]["gpu"] == "0"  # tiny.yaml: device cpu


@pytest.mark.slow
def test_train_processes_runs_the_train_rule_under_torchrun(workflow, tmp_path):
    """One config value: the train rule launches torchrun with that many DDP processes (gloo on the CPU here) and
    asks the scheduler for as many GPUs when the device is not the CPU."""
    import torch

    (workflow / "ddp.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "methods": ["baseline"], "train_processes": 2,
                                                       "overrides": {"baseline": ["epochs=1"]}}))
    plan = snakemake(workflow, "-n", "-p", "results/tiny/baseline/model.pt", "--configfile", "ddp.yaml",
                     "--config", "device=auto")
    assert "python -m torch.distributed.run --standalone --nproc_per_node 2 -m trainer.train" in plan.stdout
    on_cluster = snakemake(workflow, "--workflow-profile", "profiles/slurm", "-n", "results/tiny/baseline/model.pt",
                           "--configfile", "ddp.yaml", "--config", "device=auto")
    assert planned_resources(on_cluster)["train"][0]["gpu"] == "2"  # (locally capped by profiles/default's gpu=1)
    snakemake(workflow, "--cores", "2", "results/tiny/baseline/model.pt", "--configfile", "ddp.yaml")
    model = torch.load(workflow / "results/tiny/baseline/model.pt", weights_only=False)
    assert model["world_size"] == 2 and model["device"] == "cpu"
    assert jobs_planned(snakemake(workflow, "-n", "results/tiny/baseline/model.pt", "--configfile", "tiny.yaml",
                                  "--config", "overrides={baseline: [epochs=1]}")) == {"train": 1}  # 1 process: rerun


@pytest.mark.slow
def test_learned_stage_backends_ask_for_a_gpu_unless_set_to_cpu(workflow, tmp_path):
    weights = workflow / "data/models/sam_vit_b_01ec64.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"plan only")  # the plan checks the file exists; nothing here loads it
    target = "data/derived/tiny/silhouettes/sam.h5"
    jobs = planned_resources(snakemake(workflow, "-n", target, "--configfile", "tiny.yaml"))["stage_shard"]
    assert sorted(j.get("gpu") for j in jobs) == ["0", "0", "1", "1"]  # 2 keypoints (mediapipe), 2 sam shards
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump({"backends": {"silhouettes": {"sam": {
        "params": {"model_type": "vit_b", "min_score": 0.5, "device": "cpu"}, "inputs": ["keypoints"],
        "model_file": "data/models/sam_vit_b_01ec64.pth"}}}}))
    jobs = planned_resources(snakemake(workflow, "-n", target, "--configfile", "tiny.yaml",
                                       str(tmp_path / "cpu.yaml")))["stage_shard"]
    assert {j.get("gpu") for j in jobs} == {"0"}


@pytest.mark.slow
def test_switching_a_stage_backend_reruns_only_that_stage_and_its_dependants(workflow):
    """A method that requires keypoints and silhouettes, built once on groundtruth keypoints + GrabCut;
    then the plan after each config change names exactly the jobs that change touches."""
    spec = yaml.safe_load((workflow / "config/methods/baseline.yaml").read_text())
    spec["requires"] = ["keypoints", "silhouettes"]
    (workflow / "config/methods/shapeaware.yaml").write_text(yaml.safe_dump(spec))
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["stages"] = {"keypoints": {"backend": "groundtruth"}, "silhouettes": {"backend": "grabcut"}}
    cfg["shards"] = {"keypoints": 1, "silhouettes": 2}
    cfg["backends"] = {"keypoints": {"groundtruth": {}},
                       "silhouettes": {"grabcut": {"params": {"iterations": 2}, "inputs": ["keypoints"]},
                                       "groundtruth": {}}}

    def plan(change=None, *options):
        c = json.loads(json.dumps(cfg))
        if change:
            change(c)
        (workflow / "stages.yaml").write_text(yaml.safe_dump(c))
        return jobs_planned(snakemake(workflow, "-n", *options, "results/tiny/shapeaware/metrics.json",
                                      "--configfile", "stages.yaml"))

    plan()
    snakemake(workflow, "--cores", "2", "results/tiny/shapeaware/metrics.json", "--configfile", "stages.yaml")
    model = __import__("torch").load(workflow / "results/tiny/shapeaware/model.pt", weights_only=False)
    assert model["preprocessing"]["silhouettes"]["backend"] == "grabcut"
    assert json.loads(model["preprocessing"]["silhouettes"]["params"])["iterations"] == 2
    assert plan() == {}

    def switch_silhouettes(c):
        c["stages"]["silhouettes"]["backend"] = "groundtruth"

    assert plan(switch_silhouettes) == {"stage_shard": 2, "stage_merge": 1, "train": 1, "evaluate": 1}

    def grabcut_param(c):
        c["backends"]["silhouettes"]["grabcut"]["params"]["iterations"] = 3

    assert plan(grabcut_param) == {"stage_shard": 2, "stage_merge": 1, "train": 1, "evaluate": 1}

    def more_shards(c):
        c["shards"]["keypoints"] = 2
        c["datasets"]["tiny"]["shards"] = {"silhouettes": 3}

    # a store's content does not depend on its split: existing stores keep theirs, under any count or profile
    assert plan(more_shards) == {}
    assert plan(None, "--workflow-profile", "profiles/slurm") == {}  # the cluster profile: 32 shards per stage
    assert plan(grabcut_param, "--workflow-profile", "profiles/slurm") == {"stage_shard": 2, "stage_merge": 1,
                                                                          "train": 1, "evaluate": 1}


@pytest.mark.slow
def test_missing_weights_stop_the_plan_naming_file_and_source(workflow):
    proc = snakemake(workflow, "-n", "data/derived/synthetic/keypoints/alphapose.h5", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "data/models/fast_res50_256x192.pth: weights for keypoints backend alphapose are missing" in out
    assert "MODEL_ZOO" in out and "expected sha256 not recorded" in out


@pytest.mark.slow
def test_offline_preprocessing_chain_plans_every_stage(workflow):
    """The default config builds every stage for the synthetic dataset: the contact sheet needs them all."""
    proc = snakemake(workflow, "-n", "data/derived/synthetic/contact_sheet.png")
    shards = yaml.safe_load((REPO / "config/config.yaml").read_text())["shards"]
    assert jobs_planned(proc) == {"synthetic_dataset": 1, "lists": 1, "pack": 1, "stage_shard": sum(shards.values()),
                                  "stage_merge": 6, "contact_sheet": 1}
    assert '"label_set": "keypoint-geometry"' in proc.stdout  # the cloth scheme follows the parsing backend


@pytest.mark.slow
def test_a_dataset_can_choose_its_own_stage_backends(workflow):
    """datasets.<d>.stages overrides the top-level stages for that dataset only; what reads the store follows."""
    cfg = {"datasets": {"tiny": {**TINY_CONFIG["datasets"]["tiny"],
                                 "stages": {"keypoints": {"backend": "groundtruth"}}}}}
    (workflow / "ownstages.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workflow, "-n", "-p", "data/derived/tiny/contact_sheet.png",
                     "data/derived/synthetic/silhouettes/grabcut.h5", "--configfile", "tiny.yaml",
                     "--configfile", "ownstages.yaml")
    runs = [ln for ln in proc.stdout.splitlines() if "pipeline.stages run" in ln]
    tiny_keypoints = [ln for ln in runs if "--stage keypoints" in ln and "derived/tiny/" in ln]
    # the store of tiny's truth keypoints is planned unless an earlier test of this module built it
    assert tiny_keypoints or (workflow / "data/derived/tiny/keypoints/groundtruth.h5").is_file()
    assert all("--backend groundtruth" in ln for ln in tiny_keypoints)
    assert all("data/raw/tiny/groundtruth/groundtruth.h5" in ln for ln in tiny_keypoints)
    # GrabCut on tiny is seeded by the truth, on the other dataset by mediapipe as configured at the top
    grabcut = [ln for ln in runs if "--backend grabcut" in ln]
    assert any("derived/tiny/" in ln and "--input-store data/derived/tiny/keypoints/groundtruth.h5" in ln
               for ln in grabcut)
    assert any("derived/synthetic/" in ln and "--input-store data/derived/synthetic/keypoints/mediapipe.h5" in ln
               for ln in grabcut)
    assert not any("derived/tiny/keypoints/mediapipe" in ln for ln in proc.stdout.splitlines())


@pytest.mark.slow
def test_a_parsing_backend_without_cloth_scheme_is_refused(workflow, tmp_path):
    # config files merge, so a scheme cannot be removed by --configfile: edit config.yaml in a copy
    copy = tmp_path / "wf"
    shutil.copytree(workflow, copy, ignore=shutil.ignore_patterns("data", "results", "logs", ".snakemake"))
    base = yaml.safe_load((copy / "config/config.yaml").read_text())
    del base["cloth_schemes"]["keypoint-geometry"]
    (copy / "config/config.yaml").write_text(yaml.safe_dump(base))
    proc = snakemake(copy, "-n", "data/derived/synthetic/cloth_masks/parsing.h5", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "cloth_schemes has no scheme for the parsing backend 'keypoint-geometry'" in out


@pytest.mark.slow
@pytest.mark.parametrize("backends, stages, expected", [
    # configured, but no such backend exists in the code
    ({"parsing": {"other": {"inputs": ["keypoints", "silhouettes"]}}}, {"parsing": {"backend": "other"}},
     "unknown parsing backend 'other'"),
    ({"silhouettes": {"grabcut": {"params": {"iterations": "five"}, "inputs": ["keypoints"]}}}, {},
     "parameter 'iterations' is 'five'"),
    ({"silhouettes": {"grabcut": {"params": {"margin": 0.7}, "inputs": ["keypoints"]}}}, {}, "'margin'"),
    ({"keypoints": {"mediapipe": {"params": {"upscale": 2.0, "min_detection_confidence": 0.5, "upscaled": 3}}}}, {},
     "unknown parameter"),
])
def test_a_bad_backend_or_parameter_stops_the_plan(workflow, backends, stages, expected):
    cfg = {"backends": backends, "stages": stages}
    (workflow / "badbackend.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workflow, "-n", "data/derived/synthetic/contact_sheet.png", "--configfile", "badbackend.yaml",
                     check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and expected in out, out[-2000:]


@pytest.mark.slow
def test_allow_none_found_reaches_the_shard_command(workflow):
    cfg = {"backends": {"faces": {"mediapipe": {"allow_none_found": True}}}}
    (workflow / "allownone.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workflow, "-n", "-p", "data/derived/synthetic/faces/mediapipe.h5",
                     "--configfile", "allownone.yaml")
    faces = [ln for ln in proc.stdout.splitlines() if "--stage faces" in ln]
    others = [ln for ln in proc.stdout.splitlines() if "pipeline.stages run" in ln and "--stage faces" not in ln]
    assert faces and all("--allow-none-found" in ln for ln in faces)
    assert others and not any("--allow-none-found" in ln for ln in others)


@pytest.mark.slow
def test_tiny_3dsl_end_to_end_on_the_standin_body(workflow):
    snakemake(workflow, "--cores", "2", "results/tiny/3dsl/metrics.json", "--configfile", "tiny.yaml")
    report = json.loads((workflow / "results/tiny/3dsl/metrics.json").read_text())
    assert report["method"] == "3dsl" and report["protocols"]
    model = __import__("torch").load(workflow / "results/tiny/3dsl/model.pt", weights_only=False)
    assert set(model["preprocessing"]) == {"keypoints", "silhouettes"}
    assert model["report"]["body_model"] == "stand-in body model (not SMPL)"
    assert 0 <= model["report"]["reconstruction_iou"] <= 1
    assert (workflow / "results/tiny/3dsl/train_figures/reconstructions.png").stat().st_size > 10_000
    assert (workflow / "logs/body/standin.log").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    ["--configfile", "tiny.yaml", "--config", "stages={keypoints: {backend: alphapose}}"],
    ["--configfile", "tiny.yaml", "--config", "stages={silhouettes: {backend: sam}}"],
    ["--configfile", "tiny.yaml", "sam.yaml"],
])
def test_a_backend_without_its_weights_stops_the_plan_even_where_results_exist(workflow, change):
    """Switching a stage to a learned backend whose weights are missing once planned "Nothing to be done" (Snakemake
    kept the existing model.pt when the new store could not be planned): now one line, naming file and source."""
    target = ["results/tiny/3dsl/metrics.json", "--configfile", "tiny.yaml"]
    if not (workflow / "results/tiny/3dsl/metrics.json").is_file():
        snakemake(workflow, "--cores", "2", *target)
    assert jobs_planned(snakemake(workflow, "-n", *target)) == {}
    # an earlier test of this module puts a placeholder SAM file there for its plan
    (workflow / "data/models/sam_vit_b_01ec64.pth").unlink(missing_ok=True)
    (workflow / "sam.yaml").write_text(yaml.safe_dump({"stages": {"silhouettes": {"backend": "sam"}}}))
    proc = snakemake(workflow, "-n", "results/tiny/3dsl/metrics.json", *change, check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Nothing to be done" not in proc.stdout + proc.stderr
    assert err[-1].startswith("error: data/models/") and "are missing. " in err[-1], err[-5:]
    assert ("Download them (ccreid-weights fetch does) from https://" in err[-1]
            or "Get them by hand from https://" in err[-1]), err[-1]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_an_experiment_runs_beside_the_default_and_the_report_compares_them(workflow):
    """Two variants side by side: the default 3DSL (GrabCut silhouettes) and the experiment `gt` (the truth's):
    one extra silhouettes store, one extra training, the default's results untouched, one table and CMC of both."""
    target = ["results/tiny/3dsl/metrics.json", "--configfile", "tiny.yaml"]
    if not (workflow / "results/tiny/3dsl/metrics.json").is_file():
        snakemake(workflow, "--cores", "2", *target)
    default = {p: (workflow / p).stat().st_mtime_ns for p in ("results/tiny/3dsl/model.pt",
                                                               "results/tiny/3dsl/metrics.json")}
    (workflow / "exp.yaml").write_text(yaml.safe_dump({
        "methods": ["baseline", "cal", "3dsl"], "targets": ["tiny/3dsl", "tiny/3dsl/gt"],
        "experiments": {"gt": {"stages": {"silhouettes": {"backend": "groundtruth"}}}}}))
    figures = ["results/tiny/figures/metrics.html", "results/tiny/figures/cmc.png"]
    exp = ["--configfile", "tiny.yaml", "exp.yaml"]
    assert jobs_planned(snakemake(workflow, "-n", "results/tiny/3dsl/gt/metrics.json", *exp)) == {
        "stage_shard": 2, "stage_merge": 1, "train_experiment": 1, "evaluate_experiment": 1}
    snakemake(workflow, "--cores", "2", *figures, *exp)
    assert {p: (workflow / p).stat().st_mtime_ns for p in default} == default
    assert (workflow / "data/derived/tiny/silhouettes/groundtruth.h5").is_file()
    gt = json.loads((workflow / "results/tiny/3dsl/gt/metrics.json").read_text())
    assert gt["experiment"] == "gt" and gt["provenance"]["preprocessing"]["silhouettes"] == "groundtruth"
    table = (workflow / "results/tiny/figures/metrics.html").read_text()
    for label, silhouettes in (("3dsl", "grabcut"), ("3dsl/gt", "groundtruth")):
        rows = re.findall(rf"<tr><td class=l>{re.escape(label)}</td>.*?</tr>", table)
        assert rows and all(f"silhouettes: {silhouettes}</td></tr>" in row for row in rows), label
    assert jobs_planned(snakemake(workflow, "-n", *figures, *exp)) == {}


@pytest.mark.slow
def test_missing_imagenet_weights_stop_the_plan_not_the_training(workflow, tmp_path):
    """The paper scale's ImageNet weights once failed the train job after the preprocessing (the terminal saying
    only "check log file(s)"): the plan knows the file trainer.pretrained resolves, so it stops in one line."""
    tiny = TINY_CONFIG["datasets"]["tiny"]
    overlay = {"datasets": {"tinyw": {**tiny, "root": "data/raw/tinyw"}},
               "overrides": {"cal": ["model.pretrained=IMAGENET1K_V1"]}}
    (workflow / "imagenet.yaml").write_text(yaml.safe_dump(overlay))
    target = ["results/tinyw/cal/metrics.json", "--configfile", "tiny.yaml", "imagenet.yaml"]
    proc = snakemake(workflow, "-n", *target, check=False, torch_home=tmp_path / "torch")
    err = proc.stderr.strip().splitlines()
    cached = tmp_path / "torch/hub/checkpoints/resnet18-f37072fd.pth"  # the tiny scale's backbone
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert err[-1].startswith(f"error: {cached}: torchvision's resnet18 IMAGENET1K_V1 weights, which cal loads at "
                              "scale tiny on tinyw, is missing. Download it (ccreid-weights fetch does) from "
                              "https://download.pytorch.org/models/resnet18-f37072fd.pth"), err[-3:]
    assert "scales: {tinyw: {cal: <scale>}}" in err[-1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"present")  # the plan checks presence; the trainer checks the content
    planned = snakemake(workflow, "-n", "-p", *target, torch_home=tmp_path / "torch")
    assert str(cached) in planned.stdout and jobs_planned(planned)["train"] == 1
    # from scratch (the method file's pretrained: none at the tiny scale): no file is needed at all
    shutil.rmtree(tmp_path / "torch")
    overlay["overrides"] = {}
    (workflow / "imagenet.yaml").write_text(yaml.safe_dump(overlay))
    assert jobs_planned(snakemake(workflow, "-n", *target, torch_home=tmp_path / "torch"))["train"] == 1


def read_report(path) -> tuple[dict, dict]:
    """(results, categories) of a report Snakemake wrote: the JSON its page embeds."""
    html = path.read_text()
    found = {name: json.loads(re.search(rf"var {name} = (\{{.*?\}});\s*</script>", html, re.S).group(1))
             for name in ("results", "categories")}
    return found["results"], found["categories"]


@pytest.mark.slow
def test_the_report_of_the_tiny_workflow_holds_every_figure(workflow):
    """`snakemake report` then `snakemake --report`, as a person would; the page lists every item, each with
    its caption, labels and a picture or table inside."""
    import base64

    (workflow / "report.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "targets": ["tiny/cal", "tiny/3dsl"],
                                                          "report": {"queries": 3, "top": 4}}))
    snakemake(workflow, "--cores", "2", "report", "--configfile", "report.yaml")
    log = (workflow / "logs/tiny/cal/figures/ranklist.log").read_text()
    assert "wrote results/tiny/cal/figures/ranklist.png" in log  # every figure rule writes a log
    snakemake(workflow, "--report", "report.html", "--configfile", "report.yaml")
    results, categories = read_report(workflow / "report.html")
    expected = {"results/tiny/figures/metrics.html": ("metrics table", None, "text/html"),
                "results/tiny/figures/cmc.png": ("CMC curves", None, "image/png"),
                "results/tiny/figures/summary.html": ("summary", None, "text/html"),
                "data/derived/tiny/contact_sheet.png": ("contact sheet", None, "image/png"),
                "results/tiny/3dsl/train_figures/reconstructions.png": ("reconstructions", "3dsl", "image/png")}
    for method in ("cal", "3dsl"):
        for name, figure in (("ranklist", "rank list"), ("tsne", "t-SNE of test features"),
                             ("curves", "training curves")):
            expected[f"results/tiny/{method}/figures/{name}.png"] = (figure, method, "image/png")
    assert set(results) == set(expected)
    for path, (figure, method, mime) in expected.items():
        item = results[path]
        assert item["labels"]["figure"] == figure and item["labels"]["dataset"] == "tiny"
        assert item["labels"].get("method") == method
        assert item["mime_type"] == mime and len(item["caption"]) > 80
        data = base64.b64decode(item["data_uri"].split("base64,", 1)[1])
        assert data == (workflow / path).read_bytes()
    assert set(categories) == {"tiny"}
    assert set(categories["tiny"]) == {"methods compared", "dataset", "cal", "3dsl"}
    table = (workflow / "results/tiny/figures/metrics.html").read_text()
    for method in ("cal", "3dsl"):
        metrics = json.loads((workflow / f"results/tiny/{method}/metrics.json").read_text())
        assert metrics["provenance"]["config_hash"] in table
        for protocol, m in metrics["protocols"].items():
            cmc = m["cmc"]  # the curve to rank 50 (shorter when the gallery is), rank-1 first, never falling
            assert 0 < len(cmc) <= 50 and cmc[0] == pytest.approx(m["rank1"], abs=1e-6)
            assert all(a <= b for a, b in zip(cmc, cmc[1:], strict=False))
            assert f"<td class=l>{method}</td><td class=l>{protocol}</td>" in table
            assert f"<td>{100 * m['mAP']:.1f}</td>" in table
    # a figure's option is a params of its rule: changing it redraws that figure alone
    (workflow / "report2.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "targets": ["tiny/cal", "tiny/3dsl"],
                                                           "report": {"queries": 2, "top": 4}}))
    assert jobs_planned(snakemake(workflow, "-n", "report", "--configfile", "report2.yaml")) == {
        "rank_list": 2, "report": 1}
    # a method retrained (another seed here, another scale alike) redraws every figure that shows it, the metrics
    # table and CMC of its dataset included, not only its train_figures (a train output): what `snakemake report`
    # does before `snakemake --report`, which packs the files as they are
    (workflow / "report3.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "targets": ["tiny/cal", "tiny/3dsl"],
                                                           "methods": ["baseline", "cal", "3dsl"],
                                                           "report": {"queries": 3, "top": 4},
                                                           "overrides": {"3dsl": ["seed=2"]}}))
    assert jobs_planned(snakemake(workflow, "-n", "report", "--configfile", "report3.yaml")) == {
        "train": 1, "evaluate": 1, "metrics_table": 1, "cmc_curves": 1, "rank_list": 1, "feature_map": 1,
        "training_curves": 1, "report": 1}
    for method in ("cal", "3dsl"):  # each run's row names the stage backends of the stores it trained with
        stores = json.loads((workflow / f"results/tiny/{method}/metrics.json").read_text())["provenance"][
            "preprocessing"]
        assert bool(stores) == (method == "3dsl")
        named = ", ".join(f"{stage}: {backend}" for stage, backend in sorted(stores.items())) or "none"
        assert f"<td class=l>{named}</td></tr>" in table


@pytest.mark.slow
def test_tiny_deskpro_end_to_end_and_a_faces_change_reruns_only_the_face_chain(workflow):
    """Teacher, then student, on the offline stores; metrics for face ⊕ body and each stream. Changing the faces
    backend (its parameters, or another backend) replans faces, faces_restored, both trainings and the student's
    evaluation — not keypoints, parsing, cloth masks, lists or the pack."""
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["methods"] = ["baseline", "cal", "deskpro_teacher", "deskpro"]
    (workflow / "deskpro.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/tiny/deskpro/metrics.json"
    snakemake(workflow, "--cores", "2", target, "--configfile", "deskpro.yaml")
    report = json.loads((workflow / target).read_text())
    assert report["method"] == "deskpro" and set(report["streams"]) == {"all", "body", "face"}
    assert report["protocols"] == report["streams"]["all"]
    assert report["protocols"]["CC"]["num_valid_queries"] > 0
    torch = __import__("torch")
    model = torch.load(workflow / "results/tiny/deskpro/model.pt", weights_only=False)
    assert set(model["preprocessing"]) == {"cloth_masks", "faces", "faces_restored"}
    assert model["report"]["teacher"]["path"] == "results/tiny/deskpro_teacher/model.pt"
    assert "loss_kd" in (workflow / "logs/tiny/deskpro/train.log").read_text()
    assert jobs_planned(snakemake(workflow, "-n", target, "--configfile", "deskpro.yaml")) == {}

    def plan(change):
        c = json.loads(json.dumps(cfg))
        change(c)
        (workflow / "faces.yaml").write_text(yaml.safe_dump(c))
        return jobs_planned(snakemake(workflow, "-n", target, "--configfile", "faces.yaml"))

    face_chain = {"stage_shard": 2 + 1, "stage_merge": 2, "train": 2, "evaluate": 1}

    def stricter_faces(c):
        c["backends"] = {"faces": {"mediapipe": {"params": {"min_confidence": 0.6}, "inputs": ["keypoints"]}}}

    assert plan(stricter_faces) == face_chain
    weights = workflow / "data/models/retinaface_resnet50_2020-07-20-f168fae3c.zip"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"planning only checks that the file is there")

    def retinaface(c):
        c["stages"] = {"faces": {"backend": "retinaface"}}

    assert plan(retinaface) == face_chain


@pytest.mark.slow
def test_tiny_cre_bsga_end_to_end_and_a_parsing_change_reruns_only_the_parsing_chain(workflow):
    """CRE+BSGA on the offline parsing and cloth masks; the evaluate rule gives it the cloth masks (BSGA reads the
    test image's body mask). Switching the parsing backend replans parsing, cloth masks, train and evaluate only."""
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["methods"] = ["baseline", "cal", "cre_bsga"]
    (workflow / "cre.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/tiny/cre_bsga/metrics.json"
    snakemake(workflow, "--cores", "2", target, "--configfile", "cre.yaml")
    report = json.loads((workflow / target).read_text())
    assert report["method"] == "cre_bsga" and report["protocols"]["CC"]["num_valid_queries"] > 0
    assert "anchors_without_cross_clothes_positive" in (workflow / "logs/tiny/cre_bsga/train.log").read_text()
    assert jobs_planned(snakemake(workflow, "-n", target, "--configfile", "cre.yaml")) == {}

    def plan(change):
        c = json.loads(json.dumps(cfg))
        change(c)
        (workflow / "parsing.yaml").write_text(yaml.safe_dump(c))
        return jobs_planned(snakemake(workflow, "-n", target, "--configfile", "parsing.yaml"))

    parsing_chain = {"stage_shard": 2 + 1, "stage_merge": 2, "train": 1, "evaluate": 1}

    def wider_limbs(c):
        c["backends"] = {"parsing": {"keypoint-geometry": {"params": {"min_score": 0.3, "limb_width": 0.08},
                                                           "inputs": ["keypoints", "silhouettes"]}}}

    assert plan(wider_limbs) == parsing_chain
    weights = workflow / "data/models/exp-schp-201908301523-atr.pth"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"planning only checks that the file is there")

    def schp_atr(c):
        c["stages"] = {"parsing": {"backend": "schp-atr"}}

    assert plan(schp_atr) == parsing_chain


@pytest.mark.slow
def test_a_missing_smpl_file_stops_the_plan_naming_file_and_source(workflow):
    cfg = dict(TINY_CONFIG, body={"model": "data/models/smpl/SMPL_NEUTRAL.pkl", "mocap": "standin"})
    (workflow / "smpl.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workflow, "-n", "results/tiny/3dsl/metrics.json", "--configfile", "smpl.yaml", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "data/models/smpl/SMPL_NEUTRAL.pkl: body.model in config.yaml is missing" in out
    assert "smpl.is.tue.mpg.de" in out


@pytest.mark.slow
def test_a_config_file_with_a_key_twice_stops_the_plan_naming_key_and_lines(workflow):
    """Snakemake's own loader keeps the second `overrides:` block and drops the first without a word."""
    text = (yaml.safe_dump(TINY_CONFIG) + "overrides:\n  cal: [epochs=1]\n"
            + yaml.safe_dump({"overrides": {"baseline": ["epochs=2"]}}))
    (workflow / "twice.yaml").write_text(text)
    first, second = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith("overrides:")]
    proc = snakemake(workflow, "-n", "results/tiny/cal/metrics.json", "--configfile", "twice.yaml", check=False)
    assert proc.returncode != 0
    assert (f"twice.yaml:{second}:1: duplicate key 'overrides' (first at line {first};"
            in proc.stdout + proc.stderr), proc.stderr[-3000:]
    assert jobs_planned(proc) == {}


@pytest.mark.slow
@pytest.mark.parametrize("change, expected", [
    ({"datasets": {"tiny": {"scale": "tiniest"}}}, "unknown scale 'tiniest'"),
    ({"overrides": {"cal": ["optim.lr=fast"]}}, "cal.yaml override.optim.lr: expected a number"),
    ({"overrides": {"cal": ["optim.lrr=1e-4"]}}, "unknown key 'lrr'"),
    # values no training runs with (trainer/config.py check_trainable), for the target's method or another
    ({"overrides": {"cal": ["optim.lr=0"]}}, "optim.lr is 0.0; it must be positive"),
    ({"overrides": {"baseline": ["epochs=0"]}}, "epochs is 0; it must be at least 1"),
    ({"overrides": {"cal": ["data.batch_size=0"]}}, "data.batch_size is 0"),
])
def test_a_bad_scale_or_override_stops_the_plan_before_any_work(workflow, change, expected):
    cfg = json.loads(json.dumps(TINY_CONFIG))
    for key, value in change.items():
        if key == "datasets":
            cfg["datasets"]["tiny"].update(value["tiny"])
        else:
            cfg[key] = value
    (workflow / "badmethod.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(workflow, "-n", "results/tiny/cal/metrics.json", "--configfile", "badmethod.yaml", check=False)
    assert proc.returncode != 0 and expected in proc.stdout + proc.stderr


@pytest.mark.slow
def test_editing_an_image_inside_a_real_dataset_reruns_lists_and_pack(tmp_path_factory):
    """Snakemake sees only the layout folder's own time; the lists rule's fingerprint parameter sees inside."""
    import cv2

    from pipeline.synthetic import generate

    from .conftest import TINY

    work = tmp_path_factory.mktemp("rawedit")
    for name in ("Snakefile", "rules", "config", "envs", "profiles", "report"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    generate(TINY, work / "data/raw/real", jobs=1, progress=False)
    cfg = {"datasets": {"real": {"format": "prcc", "root": "data/raw/real", "scale": "tiny"}}, "methods": ["baseline"],
           "device": "cpu"}
    (work / "real.yaml").write_text(yaml.safe_dump(cfg))
    target = ["data/derived/real/images.h5", "--configfile", "real.yaml"]
    snakemake(work, "--cores", "1", *target)
    assert jobs_planned(snakemake(work, "-n", *target)) == {}
    images = sorted((work / "data/raw/real/prcc/rgb/train").rglob("*.jpg"))
    layout_mtime = (work / "data/raw/real/prcc/rgb").stat().st_mtime_ns
    cv2.imwrite(str(images[3]), 255 - cv2.imread(str(images[3])))  # replaced deep inside, same name
    assert (work / "data/raw/real/prcc/rgb").stat().st_mtime_ns == layout_mtime
    proc = snakemake(work, "-n", *target)
    assert jobs_planned(proc) == {"lists": 1, "pack": 1} and "Params have changed" in proc.stdout
    snakemake(work, "--cores", "1", *target)
    assert jobs_planned(snakemake(work, "-n", *target)) == {}
    images[5].unlink()
    assert jobs_planned(snakemake(work, "-n", *target)) == {"lists": 1, "pack": 1}


@pytest.mark.slow
def test_an_override_typo_for_any_configured_method_stops_every_plan(workflow):
    """Not only the target's method: the workflow checks every configured method at each of its scales."""
    cfg = dict(TINY_CONFIG, overrides={"cal": ["optim.lrr=1e-4"]})
    (workflow / "othertypo.yaml").write_text(yaml.safe_dump(cfg))
    target = ["-n", "results/tiny/baseline/metrics.json", "--configfile", "othertypo.yaml"]
    proc = snakemake(workflow, *target, check=False)
    assert proc.returncode != 0 and "unknown key 'lrr'" in proc.stdout + proc.stderr
    cfg = dict(TINY_CONFIG, overrides={"cla": ["epochs=1"]})
    (workflow / "othertypo.yaml").write_text(yaml.safe_dump(cfg))
    target = ["-n", "results/tiny/baseline/metrics.json", "--configfile", "othertypo.yaml"]
    proc = snakemake(workflow, *target, check=False)
    assert proc.returncode != 0 and "overrides for ['cla']" in proc.stdout + proc.stderr


BENCH_CONFIG = {
    **TINY_CONFIG,
    "datasets": {**TINY_CONFIG["datasets"],
                 "tiny_free": {**TINY_CONFIG["datasets"]["tiny"], "root": "data/raw/tiny_free",
                               "synthetic": {**TINY_CONFIG["datasets"]["tiny"]["synthetic"], "erase_clothes": True}}},
    "benchmark": {"dataset": "tiny", "oracle": "tiny_free", "methods": ["baseline", "cal"], "seeds": [1, 2]},
    "overrides": {"baseline": ["epochs=1"], "cal": ["epochs=1"]},  # six trainings: the shortest that runs each rule
}


@pytest.mark.slow
def test_a_tiny_benchmark_runs_each_seed_as_its_own_job_and_tabulates_them(workflow):
    """`snakemake benchmark`: 2 methods × 2 seeds and the oracle on the clothes-free twin; the table's rows are the
    seeds' means and their cost; another seed plans only its own runs; the table is in the report."""
    import numpy as np

    from pipeline.benchmark_file import read_benchmark_file

    (workflow / "bench.yaml").write_text(yaml.safe_dump(BENCH_CONFIG))
    snakemake(workflow, "--cores", "2", "benchmark", "--configfile", "bench.yaml")
    runs = {(d, m): [json.loads((workflow / f"results/{d}/{m}/seed{s}/metrics.json").read_text()) for s in (1, 2)]
            for d, m in (("tiny", "baseline"), ("tiny", "cal"), ("tiny_free", "baseline"))}
    for reports in runs.values():
        assert [r["provenance"]["seed"] for r in reports] == [1, 2]
        assert reports[0]["provenance"]["config_hash"] != reports[1]["provenance"]["config_hash"]
    with h5py.File(workflow / "results/tiny/cal/seed1/features.h5") as a, \
            h5py.File(workflow / "results/tiny/cal/seed2/features.h5") as b:
        assert not np.allclose(a["gallery"]["features"][:], b["gallery"]["features"][:])  # two trainings, not one
    table = (workflow / "results/benchmark/table.md").read_text().splitlines()
    rows = [line.split(" | ") for line in table if line.startswith("| ") and not line.startswith("| method")]
    assert [r[0] for r in rows] == ["| baseline", "| cal", "| oracle: baseline on tiny_free"]
    for row, reports in zip(rows, runs.values(), strict=True):
        assert row[1] == "1,2"
        for column, (protocol, key) in zip(row[2:6], [(p, k) for p in ("SC", "CC") for k in ("mAP", "rank1")],
                                           strict=True):
            values = [100 * r["protocols"][protocol][key] for r in reports]
            assert column == f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"
    for row, (d, m) in zip(rows, runs, strict=True):  # what a seed cost: its train + evaluate benchmark files
        minutes = [sum(read_benchmark_file(workflow / f"results/{d}/{m}/seed{s}/{job}.benchmark.tsv")[0]
                       for job in ("train", "evaluate")) / 60 for s in (1, 2)]
        assert row[7] == f"{min(minutes):.1f}–{max(minutes):.1f}"
    assert table[-3].startswith("Training and evaluation of all 6 runs, one after another: 0 h ")
    commit = runs[("tiny", "baseline")][0]["provenance"]["git_commit_train"]
    assert {r["provenance"]["git_commit_train"] for reports in runs.values() for r in reports} == {commit}
    assert table[-1] == f"Every run trained at commit {commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''}."
    assert (workflow / "logs/benchmark/table.log").is_file() and (workflow / "logs/tiny/cal/seed2/train.log").is_file()

    more = json.loads(json.dumps(BENCH_CONFIG))
    more["benchmark"]["seeds"] = [1, 2, 3]
    (workflow / "bench3.yaml").write_text(yaml.safe_dump(more))
    assert jobs_planned(snakemake(workflow, "-n", "benchmark", "--configfile", "bench3.yaml")) == {
        "train_seed": 3, "evaluate_seed": 3, "benchmark_table": 1, "benchmark": 1}
    # DeSKPro trains from deskpro_teacher: the teacher's run of each seed is planned, and the table is charged for it
    more["benchmark"].update(methods=["baseline", "cal", "deskpro"], seeds=[2])
    more["methods"] = [*dict.fromkeys([*more.get("methods", []), "baseline", "cal", "deskpro", "deskpro_teacher"])]
    (workflow / "bench_taught.yaml").write_text(yaml.safe_dump(more))
    plan = snakemake(workflow, "-n", "-p", "benchmark", "--configfile", "bench_taught.yaml").stdout
    assert "results/tiny/deskpro_teacher/seed2/model.pt" in plan
    table_job = plan[plan.index("rule benchmark_table:"):]
    table_job = table_job[:table_job.index("\n\n")]
    assert "results/tiny/deskpro_teacher/seed2/train.benchmark.tsv" in table_job
    assert "--teachers deskpro=deskpro_teacher --out results/benchmark/table.md" in plan

    snakemake(workflow, "--report", "bench.html", "benchmark", "--configfile", "bench.yaml")
    results, categories = read_report(workflow / "bench.html")
    assert "results/benchmark/table.html" in results and "benchmark" in categories
