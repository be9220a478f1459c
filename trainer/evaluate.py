"""python -m trainer.evaluate --model model.pt --lists LISTS_DIR --images images.h5 --out metrics.json

Extracts features (flip-augmented images, or clip-averaged tracklets) for every split the dataset's
protocols use, evaluates each protocol (protocol.json) and writes metrics.json (per protocol: mAP,
rank-1/5/10/20, mINP, valid queries, the CMC curve to rank 50; `dataset` is the evaluated dataset,
`train_dataset` the one the model was trained on; plus provenance) and features.h5 beside it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import h5py
import torch

from pipeline.atomic import write_text
from pipeline.cli import positive_int, reports_user_errors
from pipeline.errors import InputError
from pipeline.h5 import new_h5
from pipeline.imagepack import ImagePack
from pipeline.listfile import read_lists

from .config import set_dotted
from .features import evaluate_protocols
from .methods import method_class
from .model_file import load_feature_net
from .report import run_label
from .runtime import git_commit, hardware, pick_device
from .stores import close_stores, open_stores, parse_store_args, test_store_paths


def test_overrides(cfg: dict, kind, assignments: list[str]) -> dict:
    """The model's config with `test.KEY=VALUE` changes the method allows (Method.test_keys); anything else is
    what the model was trained with and is refused, naming it."""
    for assignment in assignments:
        key = assignment.split("=", 1)[0]
        allowed = [f"test.{k}" for k in kind.test_keys]
        if key not in allowed:
            raise InputError(f"--set {assignment}: {cfg['method']} allows only {allowed or 'no keys'} to change at "
                             "evaluation; the rest is what the model was trained with")
        cfg = set_dotted(cfg, assignment, "--set")
    return cfg


NAME = re.compile(r"[A-Za-z0-9_-]+")  # config/schema.yaml's names


def experiment_name(text: str) -> str:
    if not NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: an experiment's name is letters, digits, _ and -")
    return text


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lists", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--out", required=True, help="metrics.json path")
    ap.add_argument("--features", default=None, help="features.h5 path (default: beside --out)")
    ap.add_argument("--store", action="append", default=[], metavar="STAGE=PATH",
                    help="a store the method's test items read (its config's test.stores), e.g. faces=H5")
    ap.add_argument("--set", action="append", default=[], metavar="test.KEY=VALUE",
                    help="change a test-time setting the method allows on the trained model, e.g. test.bsga=false "
                         "with test.stores=[] (CRE+BSGA without parsing at test: no cloth_masks store read); "
                         "recorded in metrics.json")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=positive_int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    ap.add_argument("--experiment", type=experiment_name, default=None,
                    help="the named experiment the model was trained under (the workflow's experiments:), recorded "
                         "in metrics.json so that tables and plots tell it from the method's other runs")
    a = ap.parse_args(argv)
    features_path = Path(a.features) if a.features else Path(a.out).with_name("features.h5")
    if features_path.resolve() == Path(a.out).resolve():
        raise InputError(f"--out and --features are both {a.out}: the metrics would overwrite the features; give "
                         "two paths")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    device = pick_device(a.device)
    net, state = load_feature_net(a.model, device)
    cfg = state["config"]
    kind = method_class(cfg)
    cfg = test_overrides(cfg, kind, a.set)
    net = kind.test_feature_net(net, cfg)
    pack = ImagePack(a.images)
    meta, _ = read_lists(a.lists)  # every line checked first: a broken line is named as such, not as other lists
    pack.check_lists(a.lists)
    stores = open_stores(test_store_paths(cfg, parse_store_args(a.store)), pack.manifest_sha256)
    try:
        metrics, extra = evaluate_protocols(net, pack, a.lists, device, lambda samples, video:
                                            kind.test_dataset(pack, samples, cfg, stores, video), a.batch_size,
                                            stores=stores)
    finally:
        close_stores(stores)
    with new_h5(features_path) as (f, _):
        for split, streams in extra["features"].items():
            g = f.create_group(split)
            ds = extra["datasets"][split]
            for i, (name, feats) in enumerate(streams.items()):  # the first is the method's result
                g.create_dataset("features" if i == 0 else f"features_{name}", data=feats)
            g.create_dataset("pid", data=ds.pids)
            g.create_dataset("camid", data=ds.camids)
            g.create_dataset("clothes_id", data=ds.clothes)
            g.create_dataset("path", data=[x.path for x in ds.samples], dtype=h5py.string_dtype())
            if not any(x.frames for x in ds.samples):  # images: the row in images.h5 and every derived store
                g.create_dataset("pack_index", data=pack.indices([x.path for x in ds.samples]))
        f.attrs["manifest_sha256"] = pack.manifest_sha256
        f.attrs["lists_sha256"] = pack.lists_sha256  # checked equal to the given lists' above
    report = {
        "dataset": meta["dataset"],  # what was evaluated; a model may be tested on another dataset than its own
        "train_dataset": state["dataset"],
        "method": cfg["method"],
        **({"experiment": a.experiment} if a.experiment else {}),
        "scale": cfg["scale"],
        **({"test_overrides": a.set} if a.set else {}),
        "protocols": metrics,
        # a method with several streams (DeSKPro: all = face ⊕ body) also reports each stream alone
        **({"streams": extra["streams"]} if len(extra["streams"]) > 1 else {}),
        "provenance": {
            "config_hash": state["config_hash"],
            "git_commit_train": state["git_commit"],
            "git_commit_eval": git_commit(Path(__file__).parent),
            "seed": cfg["seed"],
            "device_train": state["device"],
            "device_eval": str(device),
            # model files from before hardware was recorded say so rather than guess
            "hardware_train": state.get("hardware", "not recorded"),
            "hardware_eval": hardware(device),
            "world_size": state["world_size"],
            "train_epoch_seconds": round(state["train_epoch_seconds"], 1),  # all epochs, across resumed runs
            "eval_wall_seconds": round(time.time() - t0, 1),
            "manifest_sha256": pack.manifest_sha256,
            # the stage backends of the stores the model trained with (model.pt's preprocessing, from
            # trainer.stores.store_provenance); left out for model files from before it was recorded
            **({"preprocessing": {stage: s["backend"] for stage, s in state["preprocessing"].items()}}
               if "preprocessing" in state else {}),
        },
    }
    write_text(a.out, json.dumps(report, indent=2) + "\n")
    for stream, protocols in extra["streams"].items():
        label = run_label(report) + (f"[{stream}]" if stream else "")
        for name, m in protocols.items():
            print(f"{report['dataset']}/{label} {name:>4}: mAP {100 * m['mAP']:.1f}  R1 {100 * m['rank1']:.1f}  "
                  f"R5 {100 * m['rank5']:.1f}  R10 {100 * m['rank10']:.1f}  R20 {100 * m['rank20']:.1f}  "
                  f"({m['num_valid_queries']} queries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
