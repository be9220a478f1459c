"""Progress in logs (pipeline/progress.py) and the console scripts."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import progress as P


def test_log_lines_come_at_the_interval_with_counts_rate_and_eta(monkeypatch, capsys):
    monkeypatch.setenv(P.INTERVAL_ENV, "0.05")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)

    def slow(n):
        for i in range(n):
            time.sleep(0.02)
            yield i

    assert list(P.progress(slow(12), "shard 1/2", total=12, unit="images")) == list(range(12))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3  # some while it ran, one at the end
    assert all(line.startswith("shard 1/2: ") for line in lines)
    assert "ETA" in lines[0] and "/12 images" in lines[0] and "images/s" in lines[0]
    assert lines[-1].startswith("shard 1/2: 12/12 images") and lines[-1].endswith("done")
    assert list(P.progress(range(3), "quiet", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("raw", ["soon", "abc", "0", "-1", "-3", "nan", "inf", "-inf"])
def test_a_bad_interval_is_named(monkeypatch, raw):
    from pipeline.errors import UserError

    monkeypatch.setenv(P.INTERVAL_ENV, raw)
    with pytest.raises(UserError, match=f"{P.INTERVAL_ENV}='{raw}'"):
        P.log_interval()


@pytest.mark.parametrize("raw", ["abc", "0", "nan"])
def test_a_bad_interval_stops_a_command_with_one_line(tiny_dataset, tmp_path, raw):
    """Output to a file, as under Snakemake, is where the interval is read."""
    env = dict(os.environ, **{P.INTERVAL_ENV: raw})
    proc = subprocess.run([sys.executable, "-m", "pipeline.pack", "--lists", str(tiny_dataset["lists"]), "--root",
                           str(tiny_dataset["root"]), "--out", str(tmp_path / "images.h5")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {P.INTERVAL_ENV}='{raw}'")
    assert not (tmp_path / "images.h5").exists()


@pytest.mark.slow
def test_a_stage_shards_log_shows_progress_while_it_runs(tiny_dataset, tmp_path):
    """As under Snakemake: output to a file, not a terminal. The log must grow during the shard, not only at its
    end."""
    log = tmp_path / "shard.log"
    env = dict(os.environ, **{P.INTERVAL_ENV: "0.2"})
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.stages", "run", "--stage", "keypoints", "--backend",
                                 "mediapipe", "--images", str(tiny_dataset["images"]), "--out",
                                 str(tmp_path / "k.h5")], stdout=fh, stderr=subprocess.STDOUT, env=env)
        seen_while_running = []
        while proc.poll() is None:
            text = log.read_text()
            if "keypoints/mediapipe shard 1/1: " in text:
                seen_while_running.append(text)
            time.sleep(0.05)
    assert proc.returncode == 0, log.read_text()
    assert seen_while_running, log.read_text()
    assert "ETA" in seen_while_running[0]
    lines = [line for line in log.read_text().splitlines() if line.startswith("keypoints/mediapipe shard 1/1: ")
             and "images/s" in line]
    assert len(lines) >= 2 and lines[-1].endswith("done") and not lines[0].endswith("done")


@pytest.mark.slow
@pytest.mark.parametrize("script, module", [("ccreid-lists", "pipeline.lists"), ("ccreid-train", "trainer.train"),
                                            ("ccreid-evaluate", "trainer.evaluate"),
                                            ("ccreid-stages", "pipeline.stages"),
                                            ("ccreid-figures", "trainer.figures")])
def test_console_scripts_are_the_python_m_programs(script, module):
    path = Path(sys.executable).parent / script
    assert path.is_file(), f"{script} not installed beside {sys.executable} (pip install -e .)"
    out = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    ref = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == ref.stdout


@pytest.mark.slow
def test_training_writes_its_history_as_tensorboard_scalars(tiny_dataset, tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard extra (installed by the test extra)")
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.config import load_method_config
    from trainer.train import train

    from .conftest import REPO

    cfg = load_method_config(REPO / "config/methods/cal.yaml", "tiny", ["epochs=2", "eval_every=1"])
    train(cfg, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path, "cpu")
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert {"lr_optimizer", "lr_optimizer_cc", "images_per_second", "seconds"} <= set(history[0])
    runs = list((tmp_path / "tensorboard").iterdir())
    assert len(runs) == 1  # one folder per run key
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_id", "train/lr_optimizer", "train/images_per_second", "eval/CC/mAP"} <= tags
    assert [e.step for e in events.Scalars("train/loss_id")] == [1, 2]
    lrs = [h["lr_optimizer"] for h in history]
    assert [e.value for e in events.Scalars("train/lr_optimizer")] == pytest.approx(lrs)
