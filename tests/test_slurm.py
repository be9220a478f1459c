"""The workflow on a real SLURM: scripts/slurm-local.sh starts a one-node cluster on loopback (with one fake GPU),
and the tiny workflow runs through profiles/slurm-local — lists, pack, a sharded stage, train, evaluate — as SLURM
jobs whose outputs equal a local run's; a failing job stops Snakemake with its logs named instead of hanging."""
import json
import os
import re
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import yaml

from .conftest import REPO
from .test_workflow import TINY_CONFIG, jobs_planned, snakemake

pytestmark = pytest.mark.slurm
TARGETS = ("results/tiny/baseline/metrics.json", "data/derived/tiny/keypoints/mediapipe.h5")


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("scripts/slurm-local.sh needs root (it installs slurm-wlm and munge and writes /etc/slurm)")
    proc = subprocess.run(["bash", "scripts/slurm-local.sh", "start"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield
    subprocess.run(["bash", "scripts/slurm-local.sh", "stop"], cwd=REPO, timeout=120)


def workdir(base, name):
    work = base / name
    work.mkdir()
    for item in ("Snakefile", "rules", "config", "envs", "profiles", "report"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    # device auto: training asks for the node's (fake) GPU, gets it, and runs on the CPU (no CUDA here)
    (work / "tiny.yaml").write_text(yaml.safe_dump({**TINY_CONFIG, "methods": ["baseline"], "device": "auto",
                                                    "targets": ["tiny/baseline"]}))
    return work


@pytest.mark.slow
def test_the_tiny_workflow_runs_as_slurm_jobs_and_equals_a_local_run(cluster, tmp_path):
    on_slurm, local = workdir(tmp_path, "slurm"), workdir(tmp_path, "local")
    planned = jobs_planned(snakemake(on_slurm, "-n", *TARGETS, "--configfile", "tiny.yaml"))
    proc = snakemake(on_slurm, "--workflow-profile", "profiles/slurm-local", *TARGETS, "--configfile", "tiny.yaml")
    out = proc.stdout + proc.stderr
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", out)
    assert len(submitted) == sum(planned.values())  # every job of the plan, none run locally
    assert {"lists", "pack", "stage_shard", "stage_merge", "train", "evaluate"} <= set(planned)
    for job_id, log in submitted:
        assert os.path.isfile(log), f"SLURM job {job_id}: no log {log}"
    # jobs asking for a GPU (training, evaluation) ran in the gpu partition with one, the others in cpu
    for job_id, log in submitted:
        job = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
        wants_gpu = "/rule_train/" in log or "/rule_evaluate/" in log
        assert f"Partition={'gpu' if wants_gpu else 'cpu'} " in job, (log, job)
        assert ("TresPerJob=gres:gpu:1" in job) == wants_gpu, (log, job)
    snakemake(local, "--cores", "2", *TARGETS, "--configfile", "tiny.yaml")
    for name in sorted(p.name for p in (local / "data/derived/tiny/lists").iterdir()):
        assert (on_slurm / "data/derived/tiny/lists" / name).read_bytes() == \
            (local / "data/derived/tiny/lists" / name).read_bytes(), name
    with h5py.File(on_slurm / TARGETS[1]) as a, h5py.File(local / TARGETS[1]) as b:
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_array_equal(a[key][:], b[key][:], err_msg=key)
    m_slurm, m_local = (json.loads((w / TARGETS[0]).read_text()) for w in (on_slurm, local))
    assert m_slurm["provenance"]["manifest_sha256"] == m_local["provenance"]["manifest_sha256"]
    for name, m in m_local["protocols"].items():
        for key in ("mAP", "rank1", "mINP"):
            assert m_slurm["protocols"][name][key] == pytest.approx(m[key], abs=1e-6), (name, key)


@pytest.mark.slow
def test_a_failing_slurm_job_stops_the_run_naming_its_logs(cluster, tmp_path):
    work = workdir(tmp_path, "broken")
    for split in ("train", "val", "test"):
        (work / "data/raw/broken/prcc/rgb" / split).mkdir(parents=True)  # a layout without images
    (work / "broken.yaml").write_text(yaml.safe_dump({"datasets": {"broken": {"format": "prcc",
                                                                             "root": "data/raw/broken"}},
                                                     "device": "cpu"}))
    proc = snakemake(work, "--workflow-profile", "profiles/slurm-local", "data/derived/broken/lists/protocol.json",
                     "--configfile", "broken.yaml", check=False, timeout=300)  # a hang fails here
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error in rule lists" in out and "logs/broken/lists.log" in out
    slurm_log = re.search(r"(\S+/slurm_logs/rule_lists/broken/\d+\.log)", out).group(1)
    assert os.path.isfile(slurm_log)
    assert "no images found" in (work / "logs/broken/lists.log").read_text()
