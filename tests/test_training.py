import json
from pathlib import Path

import pytest
import torch

from trainer.config import ConfigError, load_method_config
from trainer.evaluate import main as evaluate_main
from trainer.runtime import hardware
from trainer.train import train

from .conftest import REPO, join_process_group_env, keep_built_method, run_ranks


def cfg(method="cal", *overrides):
    return load_method_config(REPO / f"config/methods/{method}.yaml", "tiny", list(overrides))


class Killed(Exception):
    """Stands for the process being killed right after a checkpoint was written."""


def train_until_killed(monkeypatch, c, lists, images, out):
    """Train, killed right after the first checkpoint: written, but not the history line of that epoch."""
    import trainer.engine as E

    original = E.save_checkpoint

    def save_then_die(*args):
        original(*args)
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(E, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            train(c, lists, images, out)


def _weights(model_path):
    return torch.load(model_path, weights_only=True)["feature_net"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])
def test_killed_and_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path, tiny_dataset, monkeypatch, workers):
    """With loader workers the augmentation draws used to depend on the worker's age, so a resumed run
    diverged from the next epoch on; now every draw is a function of (seed, epoch, rank, position)."""
    lists, images = str(tiny_dataset["lists"]), str(tiny_dataset["images"])
    c = cfg("cal", "epochs=2", f"data.workers={workers}")
    straight = _weights(train(c, lists, images, tmp_path / "straight"))
    train_until_killed(monkeypatch, c, lists, images, tmp_path / "resumed")
    assert len(list((tmp_path / "resumed/checkpoints").glob("*/last.pt"))) == 1
    resumed = _weights(train(c, lists, images, tmp_path / "resumed"))
    differ = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not differ, f"{len(differ)} of {len(straight)} tensors differ after resuming, e.g. {differ[:3]}"
    history = [json.loads(line) for line in (tmp_path / "resumed/history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert not (tmp_path / "resumed/checkpoints").exists(), "checkpoints are removed once model.pt is written"


def _changed_copy(tiny_dataset, base):
    """The tiny dataset with one training image's pixels changed (same paths, same lists)."""
    import shutil

    import cv2

    from pipeline.imagepack import write_pack
    from pipeline.listfile import lists_digest
    from pipeline.pack import listed_paths

    root = base / "raw"
    shutil.copytree(tiny_dataset["root"], root)
    paths = listed_paths(str(tiny_dataset["lists"]))
    image = cv2.imread(str(root / paths[0]))
    cv2.imwrite(str(root / paths[0]), 255 - image)
    write_pack(paths, root, base / "images.h5", "tiny", progress=False,
               lists_sha256=lists_digest(tiny_dataset["lists"]))
    return str(base / "images.h5")


@pytest.mark.slow
def test_a_finished_run_retrains_when_only_the_data_changed(tmp_path, tiny_dataset):
    lists, images = str(tiny_dataset["lists"]), str(tiny_dataset["images"])
    c = cfg("baseline", "epochs=1")
    first = _weights(train(c, lists, images, tmp_path / "run"))
    changed_images = _changed_copy(tiny_dataset, tmp_path / "changed")
    again = _weights(train(c, lists, changed_images, tmp_path / "run"))
    fresh = _weights(train(c, lists, changed_images, tmp_path / "fresh"))
    assert any(not torch.equal(first[k], again[k]) for k in first), "the old run's weights were handed back"
    assert all(torch.equal(fresh[k], again[k]) for k in fresh), "the rerun is not a fresh run on the new data"


@pytest.mark.slow
def test_an_interrupted_run_over_other_data_is_discarded_not_resumed(tmp_path, tiny_dataset, monkeypatch, capsys):
    lists, images = str(tiny_dataset["lists"]), str(tiny_dataset["images"])
    c = cfg("baseline", "epochs=2")
    train_until_killed(monkeypatch, c, lists, images, tmp_path / "run")
    changed_images = _changed_copy(tiny_dataset, tmp_path / "changed")
    again = _weights(train(c, lists, changed_images, tmp_path / "run"))
    out = capsys.readouterr().out
    assert "discarding" in out and "images changed" in out and "resuming" not in out
    fresh = _weights(train(c, lists, changed_images, tmp_path / "fresh"))
    assert all(torch.equal(fresh[k], again[k]) for k in fresh)


def test_run_identity_covers_everything_a_run_reads(tmp_path, tiny_dataset):
    from trainer.run_identity import changed, run_identity

    class FakeStore:
        def __init__(self, path, **attrs):
            self.path, self.attrs = path, attrs

    store_file = tmp_path / "kp.h5"
    store_file.write_bytes(b"x" * 10)
    body = tmp_path / "body.pkl"
    body.write_bytes(b"one")
    mocap = tmp_path / "mocap"
    mocap.mkdir()
    (mocap / "a.npz").write_bytes(b"a")
    lists = tmp_path / "lists"
    import shutil

    shutil.copytree(tiny_dataset["lists"], lists)

    def identity(**kw):
        args = dict(config_hash="c1", manifest_sha256="m1", lists_dir=lists,
                    stores={"keypoints": FakeStore(store_file, backend="mediapipe", created="t1")},
                    resources={"body_model": str(body), "mocap": str(mocap)}, world_size=1)
        args.update(kw)
        return run_identity(**args)

    base = identity()
    assert changed(base, identity()) == []
    assert changed(base, identity(config_hash="c2")) == ["config"]
    assert changed(base, identity(manifest_sha256="m2")) == ["images"]
    assert changed(base, identity(world_size=2)) == ["world_size"]
    assert changed(base, identity(stores={"keypoints": FakeStore(store_file, backend="alphapose", created="t1")})) \
        == ["store:keypoints"]
    assert changed(base, identity(stores={"keypoints": FakeStore(store_file, backend="mediapipe", created="t2")})) \
        == ["store:keypoints"]
    assert changed(base, identity(stores={})) == ["store:keypoints"]
    body.write_bytes(b"two")
    assert changed(base, identity()) == ["resource:body_model"]
    body.write_bytes(b"one")
    (mocap / "b.npz").write_bytes(b"b")
    assert changed(base, identity()) == ["resource:mocap"]
    (mocap / "b.npz").unlink()
    with (lists / "gallery.txt").open("a") as fh:
        fh.write("extra/line.jpg 0 0 0\n")
    assert changed(base, identity()) == ["lists"]


def test_checkpoint_of_another_run_is_refused(tmp_path, tiny_dataset, monkeypatch):
    from trainer.engine import load_checkpoint

    lists, images = str(tiny_dataset["lists"]), str(tiny_dataset["images"])
    c = cfg("baseline", "epochs=2")
    train_until_killed(monkeypatch, c, lists, images, tmp_path / "r")
    ckpt = next((tmp_path / "r/checkpoints").glob("*/last.pt"))
    state = torch.load(ckpt, weights_only=True)
    state["run"] = dict(state["run"], lists="another digest")
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match=r"checkpoint of another run \(lists differ\)"):
        load_checkpoint(ckpt, None, dict(state["run"], lists="this digest"), None)
    with pytest.raises(ValueError, match="checkpoint of another run"):
        train(c, lists, images, tmp_path / "r")


@pytest.mark.slow
def test_evaluate_cli_writes_metrics_with_provenance(tmp_path, tiny_dataset):
    model = train(cfg("baseline", "epochs=1"), str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path)
    out = tmp_path / "metrics.json"
    assert evaluate_main(["--model", str(model), "--lists", str(tiny_dataset["lists"]), "--images",
                          str(tiny_dataset["images"]), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["protocols"]) == {"SC", "CC", "SC_single_shot", "CC_single_shot"}
    assert report["protocols"]["CC_single_shot"]["trials"] == 10
    for m in report["protocols"].values():
        assert 0 <= m["mAP"] <= 1 and m["rank1"] <= m["rank5"] <= m["rank10"] <= m["rank20"]
        assert m["num_valid_queries"] > 0
    prov = report["provenance"]
    assert prov["seed"] == 1 and prov["device_eval"] == "cpu" and len(prov["config_hash"]) == 12
    # where it was computed: the processor and the kernels PyTorch picked for it, at training and at evaluation
    assert prov["hardware_train"] == prov["hardware_eval"] == hardware(torch.device("cpu"))
    assert prov["hardware_train"].endswith(f"({torch.backends.cpu.get_cpu_capability()} kernels)")
    assert torch.load(model, weights_only=True)["hardware"] == prov["hardware_train"]
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.split(":")[0].strip() == "model name"]
    if names:  # Linux: the model name the kernel reports, not platform.processor()'s (often empty) guess
        assert prov["hardware_train"].startswith(names[0] + " (")
    import h5py

    from pipeline.imagepack import ImagePack

    with h5py.File(tmp_path / "features.h5") as f:  # rows join the image pack and every derived store
        paths = ImagePack(tiny_dataset["images"]).paths
        assert [paths[i] for i in f["gallery/pack_index"][:]] == [p.decode() for p in f["gallery/path"][:]]
    from trainer.report import table

    lines = table([str(out)]).splitlines()
    assert len(lines) == 5 and lines[1].split()[:3] == ["tiny", "baseline", "SC"]
    assert float(lines[2].split()[3]) == pytest.approx(100 * report["protocols"]["CC"]["mAP"], abs=0.05)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        cfg("cal", "epochz=3")
    with pytest.raises(ConfigError, match="unknown scale 'huge'"):
        load_method_config(REPO / "config/methods/cal.yaml", "huge")


def test_overrides_take_the_type_of_the_value_they_replace():
    assert cfg("cal", "optim.lr=5e-4")["optim"]["lr"] == 5e-4  # YAML 1.1 reads 5e-4 as a string
    assert isinstance(cfg("cal", "optim.lr=1")["optim"]["lr"], float)
    for bad, expected in [("optim.lr=fast", "optim.lr: expected a number"),
                          ("epochs=2.5", "epochs: expected an integer"),
                          ("amp=1", "amp: expected a boolean"), ("optim.milestones=[1, x]", r"milestones\[1\]"),
                          ("model=resnet50", "model: expected a mapping"), ("model.backbone=3", "expected a string")]:
        with pytest.raises(ConfigError, match=expected):
            cfg("cal", bad)


def _ddp_worker(rank, world, port, lists, images, out, queue):
    join_process_group_env(rank, world, port)
    torch.set_num_threads(1)
    c = load_method_config(REPO / "config/methods/cal.yaml", "tiny", ["epochs=1"])
    from trainer import distributed as D
    from trainer.train import train as run

    captured = {}
    keep_built_method(captured)
    run(c, lists, images, out, "cpu")
    m = captured["m"]
    flat = torch.cat([p.detach().flatten() for p in m.model.parameters()] +
                     [p.detach().flatten() for p in m.clothes_classifier.parameters()])
    queue.put((rank, (flat.numpy(), D.is_distributed())))


@pytest.mark.slow
def test_ddp_on_cpu_with_gloo_keeps_replicas_identical(tmp_path, tiny_dataset):
    results = run_ranks(_ddp_worker, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path)
    import numpy as np

    # ranks saw different batches; DDP (model) and the hand all-reduce (clothes classifier) keep them equal
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)
    assert (tmp_path / "model.pt").is_file()


def test_train_cli_names_a_bad_override(tmp_path, tiny_dataset, capsys):
    from trainer.train import main

    code = main(["--method-config", str(REPO / "config/methods/cal.yaml"), "--scale", "tiny", "--set", "optim.lrr=1",
                 "--lists", str(tiny_dataset["lists"]), "--images", str(tiny_dataset["images"]),
                 "--out", str(tmp_path)])
    assert code == 2 and "unknown key 'lrr'" in capsys.readouterr().err


class Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_model_and_checkpoint_files_never_run_code_when_loaded(tmp_path, tiny_dataset, monkeypatch, capsys):
    from trainer.engine import load_checkpoint
    from trainer.evaluate import main as evaluate_main

    marker = tmp_path / "payload-ran"
    crafted = tmp_path / "model.pt"
    torch.save({"kind": "ccreid model", "feature_net": {}, "config": {}, "dataset": "x", "extra": Payload(marker)},
               crafted)
    code = evaluate_main(["--model", str(crafted), "--lists", str(tiny_dataset["lists"]), "--images",
                          str(tiny_dataset["images"]), "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and str(crafted) in err and "refused unopened" in err and not marker.exists()
    ckpt = tmp_path / "last.pt"
    torch.save({"kind": "ccreid training checkpoint", "run": {}, "rng": Payload(marker)}, ckpt)
    with pytest.raises(ValueError, match="refused unopened"):
        load_checkpoint(ckpt, None, {}, None)
    assert not marker.exists()


def test_evaluate_names_a_checkpoint_or_foreign_file_given_as_model(tmp_path, tiny_dataset, monkeypatch, capsys):
    from trainer.evaluate import main as evaluate_main

    lists, images = str(tiny_dataset["lists"]), str(tiny_dataset["images"])
    train_until_killed(monkeypatch, cfg("baseline", "epochs=2"), lists, images, tmp_path / "r")
    last = next((tmp_path / "r/checkpoints").glob("*/last.pt"))
    args = ["--lists", lists, "--images", images, "--out", str(tmp_path / "m.json")]
    assert evaluate_main(["--model", str(last), *args]) == 2
    assert "a training checkpoint (last.pt), not a trained model" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    assert evaluate_main(["--model", str(tmp_path / "other.pt"), *args]) == 2
    assert "not a ccreid model.pt" in capsys.readouterr().err
    (tmp_path / "empty.pt").write_bytes(b"")
    assert evaluate_main(["--model", str(tmp_path / "empty.pt"), *args]) == 2
    assert "is empty (0 bytes)" in capsys.readouterr().err


@pytest.mark.slow
def test_metrics_name_the_evaluated_and_the_training_dataset(tmp_path, tiny_dataset, capsys):
    """A model tested on another dataset says so; that dataset's lists beside this dataset's pack (a clothes-free
    twin has the same paths) are refused by training and evaluation, naming both."""
    import shutil

    from pipeline.imagepack import write_pack
    from pipeline.listfile import lists_digest
    from pipeline.pack import listed_paths
    from trainer.evaluate import main as evaluate_main
    from trainer.train import main as train_main

    model = train(cfg("baseline", "epochs=1"), str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path)
    other = tmp_path / "other_lists"
    shutil.copytree(tiny_dataset["lists"], other)
    meta = json.loads((other / "protocol.json").read_text())
    (other / "protocol.json").write_text(json.dumps(dict(meta, dataset="another")))
    args = ["--lists", str(other), "--images", str(tiny_dataset["images"])]
    assert evaluate_main(["--model", str(model), *args, "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert f"{other}: not the lists {tiny_dataset['images']} was packed from" in err
    assert "dataset 'tiny'" in err and "dataset 'another'" in err and not (tmp_path / "m.json").exists()
    assert train_main(["--method-config", str(REPO / "config/methods/baseline.yaml"), "--scale", "tiny", *args,
                       "--out", str(tmp_path / "t")]) == 2
    assert "not the lists" in capsys.readouterr().err and not (tmp_path / "t/model.pt").exists()

    images = tmp_path / "another.h5"  # the other dataset's own pack
    write_pack(listed_paths(str(other)), tiny_dataset["root"], images, "another", progress=False,
               lists_sha256=lists_digest(other))
    assert evaluate_main(["--model", str(model), "--lists", str(other), "--images", str(images),
                          "--out", str(tmp_path / "m.json")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert (report["dataset"], report["train_dataset"]) == ("another", "tiny")


def train_under_file_size_limit(limit: int, tiny_dataset, out, *extra):
    """trainer.train on the tiny dataset in a process whose files cannot grow past `limit` bytes (RLIMIT_FSIZE:
    writes fail with EFBIG, down the same paths as a full disk's ENOSPC; SIGXFSZ ignored so that they fail, not
    kill). Imports happen before the limit, so only the run's own writes meet it."""
    import subprocess
    import sys

    script = (
        "import resource, signal, sys\n"
        "from trainer.train import main\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "sys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", script, "--method-config", str(REPO / "config/methods/baseline.yaml"),
                           "--scale", "tiny", *extra, "--lists", str(tiny_dataset["lists"]), "--images",
                           str(tiny_dataset["images"]), "--out", str(out), "--threads", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


@pytest.mark.slow
def test_a_full_disk_while_saving_a_checkpoint_is_one_line_and_leaves_no_partial_file(tmp_path, tiny_dataset):
    """RLIMIT_FSIZE makes large writes fail with EFBIG, down the same paths as a full disk (ENOSPC)."""
    out = tmp_path / "run"
    r = train_under_file_size_limit(2_000_000, tiny_dataset, out, "--set", "epochs=1")
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "File too large" in r.stderr
    assert "last.pt" in r.stderr and "Traceback" not in r.stderr
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name not in ("train_config.json", "history.jsonl")]
    assert leftovers == [], leftovers


@pytest.mark.slow
def test_a_full_disk_while_writing_train_config_names_it_and_leaves_no_partial_file(tmp_path, tiny_dataset):
    """RLIMIT_FSIZE makes the write fail with EFBIG, as a full disk fails it with ENOSPC; before any training."""
    out = tmp_path / "run"
    r = train_under_file_size_limit(64, tiny_dataset, out)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [f"error: {out / 'train_config.json'}: File too large"], r.stderr
    assert list(out.iterdir()) == []  # neither a truncated train_config.json nor its temporary


@pytest.mark.parametrize("out, features", [("x.json", "x.json"), ("features.h5", None), ("a/m.json", "a/../a/m.json")])
def test_evaluate_refuses_one_path_for_metrics_and_features(tmp_path, tiny_dataset, capsys, out, features):
    """Checked before the model is read: a missing model must not be what stops it."""
    (tmp_path / "a").mkdir()
    args = ["--model", str(tmp_path / "none.pt"), "--lists", str(tiny_dataset["lists"]), "--images",
            str(tiny_dataset["images"]), "--out", str(tmp_path / out)]
    assert evaluate_main(args + (["--features", str(tmp_path / features)] if features else [])) == 2
    assert "--out and --features are both" in capsys.readouterr().err
