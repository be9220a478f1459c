"""scripts/size-resources.py: a cluster profile's per-rule resources from the rules' benchmark files."""
import subprocess
import sys

import yaml

from .conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, seconds, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t0\t0\n")


def test_resources_are_the_largest_job_of_each_rule_with_margin(tmp_path):
    bench(tmp_path / "results/a/cal/train.benchmark.tsv", 3000, 2000)
    bench(tmp_path / "results/b/cal/train.benchmark.tsv", 6000, 1000)  # the slowest and the largest may differ
    bench(tmp_path / "results/a/cal/evaluate.benchmark.tsv", 30, 500)
    bench(tmp_path / "logs/a/keypoints/mediapipe.0-of-2.benchmark.tsv", 120, 300)
    bench(tmp_path / "logs/a/silhouettes/sam.1-of-2.benchmark.tsv", 600, 4000)
    bench(tmp_path / "logs/a/other.benchmark.tsv", 99999, 99999)  # not a rule this sizes
    proc = subprocess.run([sys.executable, str(REPO / "scripts/size-resources.py"), "--margin", "2", "logs",
                           "results"], cwd=tmp_path, capture_output=True, text=True, check=True)
    sized = yaml.safe_load(proc.stdout)["set-resources"]
    assert sized == {"train": {"runtime": 200, "mem_mb": 4000}, "evaluate": {"runtime": 1, "mem_mb": 1000},
                     "stage_shard": {"runtime": 20, "mem_mb": 8000}}
    assert "stage_shard:silhouettes" in proc.stdout  # each stage's largest is listed
    bad = tmp_path / "logs/a/faces/x.0-of-1.benchmark.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("wall\n1\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts/size-resources.py")], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "x.0-of-1.benchmark.tsv: not a Snakemake benchmark file" in proc.stderr
