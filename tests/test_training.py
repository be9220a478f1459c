import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from trainer.config import ConfigError, config_hash, load_method_config
from trainer.evaluate import main as evaluate_main
from trainer.train import train

from .conftest import REPO


def cfg(method="cal", *overrides):
    return load_method_config(REPO / f"config/methods/{method}.yaml", "tiny", list(overrides))


def test_resume_continues_exactly_where_training_stopped(tmp_path, tiny_dataset):
    lists, images = str(tiny_dataset["lists"]), str(tiny_dataset["images"])
    straight = torch.load(train(cfg("cal", "epochs=2"), lists, images, tmp_path / "straight"), weights_only=False)
    # stop after one epoch, then ask for two: the second run must resume from the checkpoint
    c1 = cfg("cal", "epochs=1")
    train(c1, lists, images, tmp_path / "resumed")
    c2 = cfg("cal", "epochs=2")
    first_ckpt = tmp_path / "resumed/checkpoints" / config_hash(c1) / "last.pt"
    target = tmp_path / "resumed/checkpoints" / config_hash(c2) / "last.pt"
    target.parent.mkdir(parents=True)
    state = torch.load(first_ckpt, weights_only=False)
    state["config_hash"] = config_hash(c2)  # same run, only the epoch budget differs
    torch.save(state, target)
    resumed = torch.load(train(c2, lists, images, tmp_path / "resumed"), weights_only=False)
    for k, v in straight["feature_net"].items():
        assert torch.allclose(v.float(), resumed["feature_net"][k].float(), atol=1e-5), k
    history = [json.loads(line) for line in (tmp_path / "resumed/history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]


def test_checkpoint_of_another_config_is_refused(tmp_path, tiny_dataset):
    lists, images = str(tiny_dataset["lists"]), str(tiny_dataset["images"])
    c = cfg("baseline", "epochs=1")
    train(c, lists, images, tmp_path / "r")
    ckpt = tmp_path / "r/checkpoints" / config_hash(c) / "last.pt"
    state = torch.load(ckpt, weights_only=False)
    state["config_hash"] = "something-else"
    torch.save(state, ckpt)
    with pytest.raises(ValueError, match="checkpoint of config something-else"):
        train(c, lists, images, tmp_path / "r")


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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, lists, images, out, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    c = load_method_config(REPO / "config/methods/cal.yaml", "tiny", ["epochs=1"])
    from trainer import distributed as D
    from trainer.train import train as run

    captured = {}
    import trainer.train as T

    original = T.build_method

    def keep(*a, **kw):
        captured["m"] = original(*a, **kw)
        return captured["m"]

    T.build_method = keep
    run(c, lists, images, out, "cpu")
    m = captured["m"]
    flat = torch.cat([p.detach().flatten() for p in m.model.parameters()] +
                     [p.detach().flatten() for p in m.clothes_classifier.parameters()])
    queue.put((rank, flat.numpy(), D.is_distributed()))


def test_ddp_on_cpu_with_gloo_keeps_replicas_identical(tmp_path, tiny_dataset):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, str(tiny_dataset["lists"]), str(tiny_dataset["images"]),
                                                   tmp_path, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, (w, d)) for r, w, d in (queue.get(timeout=300) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    import numpy as np

    # ranks saw different batches; DDP (model) and the hand all-reduce (clothes classifier) keep them equal
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-6)
    assert (tmp_path / "model.pt").is_file()


def test_train_cli_names_a_bad_override(tmp_path, tiny_dataset, capsys):
    from trainer.train import main

    code = main(["--method-config", str(REPO / "config/methods/cal.yaml"), "--scale", "tiny", "--set", "optim.lrr=1",
                 "--lists", str(tiny_dataset["lists"]), "--images", str(tiny_dataset["images"]), "--out", str(tmp_path)])
    assert code == 2 and "unknown key 'lrr'" in capsys.readouterr().err
