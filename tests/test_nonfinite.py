"""A training that diverges stops at that step and writes no model; a model with non-finite weights is refused;
values no training can run with are refused where the config is merged (issue 31, item 3)."""
import math

import pytest
import torch

from trainer.config import ConfigError, load_method_config
from trainer.engine import TrainingDiverged
from trainer.precision import Precision

from .conftest import REPO, join_process_group_env, run_ranks


def train_cli(tmp_path, tiny_dataset, *sets, method="baseline"):
    from trainer.train import main

    return main(["--method-config", str(REPO / f"config/methods/{method}.yaml"), "--scale", "tiny",
                 *[w for s in sets for w in ("--set", s)], "--lists", str(tiny_dataset["lists"]),
                 "--images", str(tiny_dataset["images"]), "--out", str(tmp_path), "--device", "cpu"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["baseline", "cal"])
def test_a_diverging_training_stops_at_that_step_and_writes_no_model(tmp_path, tiny_dataset, capsys, method):
    assert train_cli(tmp_path, tiny_dataset, "optim.lr=1e30", method=method) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training diverged at epoch 1/2, step ")
    assert "loss" in err[0] and "=nan" in err[0] and "no model was written" in err[0]
    assert not (tmp_path / "model.pt").exists()


def test_a_step_with_a_nan_gradient_is_not_taken_and_is_reported():
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    p = Precision(torch.device("cpu"), amp=False)
    (w * torch.tensor([1.0, float("nan"), 1.0])).sum().backward()
    p.step(opt)
    assert torch.equal(w.detach(), torch.ones(3))  # the weights keep their last finite values
    assert p.take_problems() == ["a gradient of SGD optimiser is NaN or infinite"] and p.take_problems() == []
    opt.zero_grad()
    p.backward((w * float("inf")).sum())
    p.step(opt)
    assert any("loss passed to backward is inf" in s for s in p.take_problems())
    assert torch.equal(w.detach(), torch.ones(3))


def test_the_engine_names_the_gradient_when_every_loss_term_is_finite(tmp_path, tiny_dataset, monkeypatch):
    """A term can be finite while its gradient is not (an overflow in backward): the step stops all the same."""
    import trainer.methods.baseline as B
    from trainer.train import train

    original = B.Baseline.train_step

    def finite_loss_nan_gradient(self, images, pids, camids, clothes, epoch, precision):
        stats = original(self, images, pids, camids, clothes, epoch, precision)
        precision.problems.append("a gradient of Adam optimiser is NaN or infinite")
        return stats

    monkeypatch.setattr(B.Baseline, "train_step", finite_loss_nan_gradient)
    c = load_method_config(REPO / "config/methods/baseline.yaml", "tiny")
    with pytest.raises(TrainingDiverged, match=r"epoch 1/2, step 1/\d+: a gradient of Adam optimiser is NaN"):
        train(c, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path)
    assert not (tmp_path / "model.pt").exists()


def test_amp_scaler_skipped_steps_are_counted_not_fatal():
    """The GradScaler's skipped steps (inf gradients of a finite loss while it finds its scale) are its business."""
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    p = Precision(torch.device("cpu"), amp=False)
    p.scaler = torch.amp.GradScaler("cpu", init_scale=65536.0, enabled=True)
    p.backward((w * 1e38).sum())  # finite, but its scaled gradient overflows
    p.step(opt)
    p.update()
    assert p.skipped_steps == 1 and p.take_problems() == [] and torch.equal(w.detach(), torch.ones(2))


def _diverging_rank(rank, world, port, lists, images, out, queue):
    """Rank 1 alone sees a NaN loss term at its first step; rank 0 must stop too rather than wait for it."""
    join_process_group_env(rank, world, port)
    torch.set_num_threads(1)
    import trainer.methods.baseline as B
    from trainer.train import train

    original = B.Baseline.train_step

    def nan_on_rank_1(self, *args):
        stats = original(self, *args)
        return {**stats, "loss_id": math.nan} if rank == 1 else stats

    B.Baseline.train_step = nan_on_rank_1
    c = load_method_config(REPO / "config/methods/baseline.yaml", "tiny", ["epochs=1"])
    try:
        train(c, lists, images, out, "cpu")
        queue.put((rank, "trained"))
    except TrainingDiverged as e:
        queue.put((rank, str(e)))


@pytest.mark.slow
def test_ddp_processes_stop_together_when_one_diverges(tmp_path, tiny_dataset):
    results = run_ranks(_diverging_rank, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path,
                        timeout=240)
    assert "step 1/" in results[1] and "loss_id=nan" in results[1]
    assert "step 1/" in results[0] and "another process" in results[0]
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.slow
def test_evaluation_and_the_api_refuse_a_model_with_nonfinite_weights(tmp_path, tiny_dataset, capsys):
    from trainer.api import load_model
    from trainer.evaluate import main as evaluate_main
    from trainer.train import train

    c = load_method_config(REPO / "config/methods/baseline.yaml", "tiny", ["epochs=1"])
    model = train(c, str(tiny_dataset["lists"]), str(tiny_dataset["images"]), tmp_path / "run")
    state = torch.load(model, weights_only=True)
    name = next(iter(state["feature_net"]))
    state["feature_net"][name] = torch.full_like(state["feature_net"][name], float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    code = evaluate_main(["--model", str(tmp_path / "nan.pt"), "--lists", str(tiny_dataset["lists"]),
                          "--images", str(tiny_dataset["images"]), "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'nan.pt'}: 1 of" in err and name in err and "diverged" in err
    assert not (tmp_path / "m.json").exists()
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_model(tmp_path / "nan.pt")


@pytest.mark.parametrize("override, named", [
    ("optim.lr=0", "optim.lr is 0.0; it must be positive"),
    ("optim.lr=-1e-3", "optim.lr is -0.001"),
    ("optim.lr=.nan", "optim.lr is nan; a training needs finite numbers"),
    ("optim.lr=.inf", "optim.lr is inf"),
    ("epochs=0", "epochs is 0; it must be at least 1"),
    ("data.batch_size=0", "data.batch_size is 0"),
    ("data.height=0", "data.height is 0; it must be positive"),
    ("data.width=-4", "data.width is -4"),
    ("seed=-1", "seed is -1; it must be 0 or more"),
    ("loss.id.epsilon=1.0", "loss.id.epsilon is 1.0; it must be in [0, 1)"),
    ("loss.id.epsilon=-0.1", "loss.id.epsilon is -0.1"),
])
def test_values_no_training_can_run_with_are_refused_naming_them(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")) as e:
        load_method_config(REPO / "config/methods/baseline.yaml", "tiny", [override])
    assert override in str(e.value)  # where it came from


def test_every_shipped_method_file_is_trainable_at_every_scale():
    from trainer.config import read_method_file

    for path in sorted((REPO / "config/methods").glob("*.yaml")):
        spec = read_method_file(path)
        for scale in ["paper", *spec["scales"]]:
            for fmt in [None, *spec["dataset_defaults"]]:
                load_method_config(path, scale, [], fmt)
