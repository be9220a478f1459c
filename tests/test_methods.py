import copy

import numpy as np
import pytest
import torch

from trainer.config import load_method_config
from trainer.methods import build_method
from trainer.precision import Precision

from .conftest import REPO

CPU = torch.device("cpu")


def tiny_cal(**changes):
    cfg = load_method_config(REPO / "config/methods/cal.yaml", "tiny")
    cfg.update(changes)
    return cfg


def batch(num_pids=3, k=2, size=(64, 32)):
    torch.manual_seed(0)
    pids = torch.arange(num_pids).repeat_interleave(k)
    clothes = pids * 2 + torch.arange(len(pids)) % 2
    return torch.randn(len(pids), 3, *size), pids, torch.zeros_like(pids), clothes


def p2c(num_pids=3):
    m = np.zeros((num_pids, 2 * num_pids), np.float32)
    for p in range(num_pids):
        m[p, 2 * p : 2 * p + 2] = 1
    return m


def test_clothes_classifier_step_never_touches_the_backbone():
    method = build_method(tiny_cal(start_epoch_cc=0, start_epoch_adv=0), 3, p2c(), CPU)
    seen = {}
    trunk_params = list(method.model.features.trunk.parameters())
    cc_weight_before = method.clothes_classifier.weight.detach().clone()
    step_cc, step_main = method.optimizer_cc.step, method.optimizer.step

    def spy_cc(*a, **kw):
        seen["trunk_grad_at_cc_step"] = [p.grad for p in trunk_params]
        seen["cc_grad"] = method.clothes_classifier.weight.grad.clone()
        return step_cc(*a, **kw)

    def spy_main(*a, **kw):
        seen["trunk_grad_at_main_step"] = [p.grad for p in trunk_params]
        return step_main(*a, **kw)

    method.optimizer_cc.step, method.optimizer.step = spy_cc, spy_main
    stats = method.train_step(*batch(), epoch=0, precision=Precision(CPU, False))
    assert all(g is None for g in seen["trunk_grad_at_cc_step"]), "step 1 must use detached features"
    assert seen["cc_grad"].abs().sum() > 0
    assert not torch.equal(cc_weight_before, method.clothes_classifier.weight)
    assert all(g is not None for g in seen["trunk_grad_at_main_step"])
    assert "loss_cal" in stats


def test_adversarial_loss_reaches_the_backbone_only_from_its_start_epoch():
    def trunk_grads(start_adv):
        torch.manual_seed(0)
        method = build_method(tiny_cal(start_epoch_cc=0, start_epoch_adv=start_adv), 3, p2c(), CPU)
        captured = {}
        original = method.optimizer.step

        def spy(*a, **kw):
            captured["g"] = [p.grad.clone() for p in method.model.features.trunk.parameters()]
            return original(*a, **kw)

        method.optimizer.step = spy
        stats = method.train_step(*batch(), epoch=0, precision=Precision(CPU, False))
        return captured["g"], stats

    with_cal, stats_on = trunk_grads(0)
    without, stats_off = trunk_grads(5)
    assert "loss_cal" in stats_on and "loss_cal" not in stats_off
    assert any(not torch.allclose(a, b) for a, b in zip(with_cal, without, strict=True))


def test_clothes_classifier_is_frozen_before_its_start_epoch():
    method = build_method(tiny_cal(start_epoch_cc=3, start_epoch_adv=3), 3, p2c(), CPU)
    before = method.clothes_classifier.weight.detach().clone()
    method.train_step(*batch(), epoch=1, precision=Precision(CPU, False))
    assert torch.equal(before, method.clothes_classifier.weight)


def test_scheduler_steps_only_the_main_optimiser():
    cfg = tiny_cal()
    cfg["optim"] = dict(cfg["optim"], milestones=[1], gamma=0.1)
    method = build_method(cfg, 3, p2c(), CPU)
    method.end_epoch(0)
    assert method.optimizer.param_groups[0]["lr"] == pytest.approx(cfg["optim"]["lr"] * 0.1)
    assert method.optimizer_cc.param_groups[0]["lr"] == pytest.approx(cfg["optim"]["lr"])


def test_last_stride_one_and_maxavg_embedding():
    cfg = load_method_config(REPO / "config/methods/baseline.yaml", "tiny")
    method = build_method(cfg, 4, p2c(4), CPU)
    net = method.feature_net().eval()
    x = torch.randn(2, 3, 64, 32)
    assert net.trunk(x).shape[-2:] == (4, 2)  # stride 16, not 32
    assert net(x).shape == (2, 2 * 512)  # cat[GMP, GAP] of resnet18's 512 channels


def test_paper_defaults_are_the_published_values():
    cfg = load_method_config(REPO / "config/methods/cal.yaml")
    assert cfg["model"]["backbone"] == "resnet50" and cfg["data"]["height"] == 384 and cfg["data"]["width"] == 192
    assert cfg["optim"]["lr"] == 3.5e-4 and cfg["optim"]["milestones"] == [20, 40] and cfg["epochs"] == 60
    assert cfg["start_epoch_cc"] == 25 and cfg["loss"]["cal"] == {"scale": 16, "epsilon": 0.1}
    m = build_method(copy.deepcopy(dict(cfg, model=dict(cfg["model"], pretrained="none"))), 5, p2c(5), CPU)
    assert m.feature_net().dim == 4096


def test_missing_pretrained_weights_fail_with_the_file_and_url(tmp_path, monkeypatch):
    from trainer.models import build_backbone

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth.*download\.pytorch\.org"):
        build_backbone("resnet18", "IMAGENET1K_V1")
    with pytest.raises(FileNotFoundError, match="weights.pth not found"):
        build_backbone("resnet18", str(tmp_path / "weights.pth"))


def test_pretrained_state_dict_file_loads(tmp_path):
    import torchvision

    from trainer.models import build_backbone

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")  # the official file's key names and shapes
    trunk, _ = build_backbone("resnet18", str(tmp_path / "r18.pth"))
    assert torch.equal(trunk[0].weight, ref.conv1.weight)


def test_cal_refuses_a_dataset_without_clothes_labels():
    with pytest.raises(ValueError, match="CAL needs clothes labels"):
        build_method(tiny_cal(), 3, None, CPU)
    cfg = load_method_config(REPO / "config/methods/baseline.yaml", "tiny")
    assert build_method(cfg, 3, None, CPU).feature_net() is not None  # the baseline needs none


def test_a_broken_pretrained_file_is_named(tmp_path):
    from trainer.models import build_backbone

    bad = tmp_path / "resnet18.pth"
    bad.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(ValueError,
                       match=r"resnet18.pth: resnet18 ImageNet weights \(model.pretrained\) cannot be read"):
        build_backbone("resnet18", str(bad))
    torch.save(torch.zeros(3), bad)
    with pytest.raises(ValueError, match="holds a Tensor, not a state dict"):
        build_backbone("resnet18", str(bad))
