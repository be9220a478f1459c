"""Method files that inherit, typed configs, and one registry type for everything chosen by name."""
import json
import re

import pytest
import torch
import yaml

from pipeline.registry import Registry
from trainer.config import ConfigError, config_hash, load_method_config, read_method_file

from .conftest import REPO

SNAPSHOT = json.loads((REPO / "tests/data/merged_method_configs.json").read_text())
# said changes since the snapshot (written before method files inherited): the optimiser, its schedule and the
# sampler are now chosen by name (optim.type adam, optim.scheduler multistep, data.sampler pk: as before), and
# optim.momentum is there for sgd; data.augment.where says where CAL's augmentation runs (auto; the tiny scale: the
# training device, so CI runs that path through the engine)
ADDED = {"optim": {"type": "adam", "momentum": 0.9, "scheduler": "multistep"}, "data": {"sampler": "pk"}}


@pytest.mark.parametrize("key", sorted(SNAPSHOT))
def test_merged_configs_are_what_they_were_key_for_key(key):
    method, scale = key.split("/")
    expected = json.loads(json.dumps(SNAPSHOT[key]["config"]))
    expected["optim"].update(ADDED["optim"])
    expected["data"].update(ADDED["data"])
    expected["data"]["augment"]["where"] = "device" if scale == "tiny" else "auto"
    assert load_method_config(REPO / f"config/methods/{method}.yaml", scale) == expected


def test_every_scale_a_snapshotted_method_defines_is_in_the_snapshot():
    """Methods added after the snapshot (deskpro_teacher, deskpro) are pinned by their own tests instead."""
    snapshotted = {key.split("/")[0] for key in SNAPSHOT}
    assert snapshotted == {"baseline", "cal", "3dsl"}
    for path in sorted((REPO / "config/methods").glob("*.yaml")):
        spec = read_method_file(path)
        if spec["method"] not in snapshotted:
            continue
        assert {f"{spec['method']}/{s}" for s in ["paper", *spec["scales"]]} <= set(SNAPSHOT), path.name


def test_cal_says_only_what_it_adds():
    raw = yaml.safe_load((REPO / "config/methods/cal.yaml").read_text())
    assert raw["base"] == "baseline.yaml"
    assert set(raw["defaults"]) == {"start_epoch_cc", "start_epoch_adv", "loss"}
    assert set(raw["defaults"]["loss"]) == {"clothes", "cal"}
    assert len((REPO / "config/methods/cal.yaml").read_text().splitlines()) < 30


def test_a_method_file_inherits_defaults_scales_and_requires(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({
        "method": "a", "requires": ["keypoints"], "defaults": {"lr": 0.1, "nested": {"x": 1, "y": 2}},
        "scales": {"small": {"lr": 0.01}, "big": {"nested": {"x": 9}}}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({
        "method": "b", "base": "a.yaml", "defaults": {"extra": True, "nested": {"y": 3}},
        "scales": {"small": {"extra": False}}}))
    spec = read_method_file(tmp_path / "b.yaml")
    assert spec["requires"] == ["keypoints"] and spec["files"] == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    assert load_method_config(tmp_path / "b.yaml") == {"lr": 0.1, "nested": {"x": 1, "y": 3}, "extra": True,
                                                       "method": "b", "scale": "paper"}
    assert load_method_config(tmp_path / "b.yaml", "small")["lr"] == 0.01  # the base's scale, merged
    assert load_method_config(tmp_path / "b.yaml", "small")["extra"] is False
    assert load_method_config(tmp_path / "b.yaml", "big")["nested"] == {"x": 9, "y": 3}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"method": "c", "base": "a.yaml", "defaults": {"lr": "fast"}}))
    with pytest.raises(ConfigError, match=r"c.yaml:defaults.lr: expected a number"):
        read_method_file(tmp_path / "c.yaml")


def test_a_base_loop_or_an_unknown_top_level_key_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"method": "a", "base": "b.yaml"}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"method": "b", "base": "a.yaml"}))
    with pytest.raises(ConfigError, match="loops back"):
        read_method_file(tmp_path / "a.yaml")
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"method": "d", "defaults": {}, "scale": {}}))
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['scale'\]"):
        read_method_file(tmp_path / "d.yaml")


def test_a_hash_change_follows_any_merged_value():
    a = load_method_config(REPO / "config/methods/cal.yaml", "tiny")
    b = load_method_config(REPO / "config/methods/cal.yaml", "tiny", ["optim.type=adamw"])
    assert config_hash(a) != config_hash(b)


# --- registries ----------------------------------------------------------------------------------------

def test_a_duplicate_registration_is_an_error_and_an_unknown_name_lists_the_known():
    r = Registry("widget")
    r.add("a", 1)
    r.register("b")(2)
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        r.add("a", 3)
    with pytest.raises(ValueError, match="unknown widget 'c'; known: a, b"):
        r.get("c")
    assert r.get("a") == 1 and r.names() == ["a", "b"] and "b" in r and len(r) == 2


def _registries():
    from pipeline.datasets import FORMATS
    from pipeline.stages.backends import BACKENDS, registered
    from trainer.losses import ID_LOSSES
    from trainer.methods import METHODS
    from trainer.models.backbones import BACKBONES, RESNETS
    from trainer.models.reid import POOLINGS
    from trainer.optim import OPTIMIZERS

    registered()
    return {"formats": FORMATS, "methods": METHODS, "backbones": BACKBONES, "resnets": RESNETS,
            "poolings": POOLINGS, "id losses": ID_LOSSES, "optimisers": OPTIMIZERS,
            **{f"{stage} backends": r for stage, r in BACKENDS.items()}}


@pytest.mark.parametrize("name", sorted(_registries()))
def test_every_registry_refuses_duplicates_and_names_the_known(name):
    registry = _registries()[name]
    assert isinstance(registry, Registry) and len(registry)
    first = registry.names()[0]
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(first, object())
    with pytest.raises(ValueError, match=f"unknown .*'no-such-thing'; known: {first}"):
        registry.get("no-such-thing")


def test_the_workflow_schema_enums_are_the_registries():
    from pipeline.datasets import FORMATS
    from pipeline.stages.backends import STAGES
    from trainer.methods import METHODS

    full = yaml.safe_load((REPO / "config/schema.yaml").read_text())
    schema = full["properties"]
    dataset = schema["datasets"]["additionalProperties"]["properties"]
    assert sorted(dataset["format"]["enum"]) == FORMATS.names()
    assert sorted(schema["methods"]["items"]["enum"]) == METHODS.names()
    # the top-level stages and a dataset's own are the one definition, whose stages are the code's
    assert schema["stages"] == dataset["stages"] == {"$ref": "#/$defs/stages"}
    assert list(full["$defs"]["stages"]["properties"]) == list(STAGES)
    inputs = schema["backends"]["additionalProperties"]["additionalProperties"]["properties"]["inputs"]["items"]["enum"]
    assert set(inputs) <= set(STAGES) and "faces_restored" not in inputs  # nothing reads restored faces as an input
    methods_on_disk = sorted(read_method_file(p)["method"] for p in (REPO / "config/methods").glob("*.yaml"))
    assert methods_on_disk == METHODS.names()


@pytest.mark.parametrize("kind, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                       ("sgd", torch.optim.SGD)])
def test_optim_type_picks_the_optimiser_every_method_builds(kind, cls):
    from trainer.methods import build_method

    for method in ("baseline", "cal"):
        cfg = load_method_config(REPO / f"config/methods/{method}.yaml", "tiny", [f"optim.type={kind}"])
        m = build_method(cfg, 3, torch.eye(3).numpy(), torch.device("cpu"))
        assert all(type(o) is cls for o in m.optimizers.values()), method
    with pytest.raises(ValueError, match="unknown optimiser \\(optim.type\\) 'lamb'; known: adam, adamw, sgd"):
        build_method(load_method_config(REPO / "config/methods/baseline.yaml", "tiny", ["optim.type=lamb"]), 3, None,
                     torch.device("cpu"))


@pytest.mark.parametrize("epoch", [0, 9, 10, 75, 139, 140, 200])
def test_warmup_cosine_schedule_against_the_formula(epoch):
    """DeSKPro's WarmupCosineAnnealingLR: warm-up 10, 140 epochs, min lr = lr/1000, stepped per epoch."""
    import math

    from trainer.optim import build_scheduler

    lr, warmup, epochs, min_ratio = 7.35e-4, 10, 140, 1e-3
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=lr)
    sched = build_scheduler(opt, {"scheduler": "warmup_cosine", "warmup_epochs": warmup, "epochs_cosine": epochs,
                                  "min_lr_ratio": min_ratio})
    for _ in range(epoch):
        opt.step()
        sched.step()
    low = lr * min_ratio
    cosine = lambda e: low + (lr - low) * (1 + math.cos(math.pi * (e - warmup) / (epochs - warmup - 1))) / 2  # noqa: E731
    if epoch < warmup:
        expected = lr * (epoch + 1) / warmup
    elif epoch <= epochs:
        expected = cosine(epoch)
    else:
        expected = low + (cosine(epochs) - low) * (1 - (epoch - epochs) / 500)
    assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9)
    if epoch == 139:
        assert expected == pytest.approx(low)  # the cosine reaches lr/1000 at the last of the 140 epochs


# --- YAML a user writes ----------------------------------------------------------------------------------

MALFORMED_METHOD_FILES = [
    ("method: a\ndefaults: {lr: [0.1}\n", r"a\.yaml:2:20: expected ',' or '\]', but got '\}'"),
    ("method: a\ndefaults:\n  lr: 0.1\n   epochs: 3\n", r"a\.yaml:4:10: mapping values are not allowed here"),
    ("method: a\ndefaults: !!python/object/apply:os.system ['touch MARKER']\n",
     r"a\.yaml:2:11: could not determine a constructor for the tag '.*python/object/apply:os\.system'"),
    ("method: a\ndefaults: {lr: 0.1}\nscales: {tiny: {lr: 0.2}}\ndefaults: {lr: 0.3}\n",
     r"a\.yaml:4:1: duplicate key 'defaults' \(first at line 2; YAML would keep only the last"),
    ("method: a\ndefaults:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n", r"a\.yaml:5:3: duplicate key 'lr' \(first at line 3"),
]


@pytest.mark.parametrize("text, expected", MALFORMED_METHOD_FILES)
def test_a_malformed_method_file_names_file_line_and_problem(tmp_path, text, expected):
    from pipeline.errors import InputError

    (tmp_path / "a.yaml").write_text(text.replace("MARKER", str(tmp_path / "ran")))
    (tmp_path / "b.yaml").write_text("method: b\nbase: a.yaml\ndefaults: {}\n")
    for path in (tmp_path / "a.yaml", tmp_path / "b.yaml"):  # read itself, or as another file's base
        with pytest.raises(InputError, match=f"^{tmp_path}/{expected}") as refused:
            load_method_config(path)
        assert "\n" not in str(refused.value)
    assert not (tmp_path / "ran").exists()


def test_merge_keys_may_repeat_what_they_bring_in(tmp_path):
    (tmp_path / "a.yaml").write_text("method: a\ndefaults:\n  common: &c {x: 1, y: 2}\n  other:\n    <<: *c\n"
                                     "    y: 3\n")
    assert load_method_config(tmp_path / "a.yaml")["other"] == {"x": 1, "y": 3}


def _train_cli(args, lists, tmp_path, capsys) -> tuple[int, str]:
    from trainer.train import main

    code = main([*args, "--lists", str(lists), "--images", str(tmp_path / "images.h5"), "--out", str(tmp_path / "o")])
    return code, capsys.readouterr().err


def test_a_malformed_method_file_or_set_value_is_one_line_from_the_command(tmp_path, capsys):
    """Refused while the config is read: before the image pack is opened or anything is written."""
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "protocol.json").write_text(json.dumps({"dataset": "d", "format": "prcc", "protocols": []}))
    for n, (text, expected) in enumerate(MALFORMED_METHOD_FILES):
        method = tmp_path / f"m{n}" / "a.yaml"
        method.parent.mkdir()
        method.write_text(text.replace("MARKER", str(tmp_path / "ran")))
        code, err = _train_cli(["--method-config", str(method)], lists, tmp_path, capsys)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert re.match(f"error: {method.parent}/{expected}", err), err
    for value, expected in [("optim.milestones=[1", r"override 'optim\.milestones=\[1':1:3: expected ',' or '\]'"),
                            ("optim.lr=!!python/object/apply:os.system ['touch MARKER']",
                             r"override \"optim\.lr=!!python/object/apply:os\.system .*\":1:1: could not determine "
                             r"a constructor for the tag '.*python/object/apply:os\.system'"),
                            ("model={backbone: a, backbone: b}", r"override 'model=\{.*\}':1:15: duplicate key "
                                                                 r"'backbone'")]:
        code, err = _train_cli(["--method-config", str(REPO / "config/methods/cal.yaml"), "--scale", "tiny", "--set",
                                value.replace("MARKER", str(tmp_path / "ran"))], lists, tmp_path, capsys)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert re.match(rf"error: cal\.yaml {expected}", err), err
    assert not (tmp_path / "ran").exists() and not (tmp_path / "o").exists()
