"""python -m trainer.train --method-config config/methods/cal.yaml --scale demo \
       --lists LISTS_DIR --images images.h5 --out results/<dataset>/<method>

Trains one method; writes OUT/model.pt (final weights + config), OUT/history.jsonl, OUT/train_figures/ and
OUT/checkpoints/<run-key>/last.pt every epoch. The run key covers everything the run reads (the merged
config, images.h5, the lists, the stores, the body model and mocap, the number of processes): rerunning
the same command resumes from the checkpoint; rerunning after any of those changed starts over. The
checkpoint folder is removed once model.pt is written.
Several processes: `torchrun --nproc_per_node N -m trainer.train ...` (gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pipeline.atomic import write_text
from pipeline.cli import reports_user_errors
from pipeline.datasets.base import pid2clothes
from pipeline.errors import InputError
from pipeline.imagepack import ImagePack
from pipeline.listfile import read_lists, read_protocol
from pipeline.weights import save_torch_file

from . import distributed as D
from .config import config_hash, load_method_config
from .engine import TrainingDiverged, checkpoint_path, discard_other_runs, fit
from .features import evaluate_protocols
from .methods import build_method, method_class
from .methods.base import augment_place
from .model_file import nonfinite_tensors
from .precision import Precision
from .run_identity import run_identity, run_key
from .runtime import git_commit, hardware, pick_device, seed_everything
from .samplers import SAMPLERS, SeededDraws
from .scalars import ScalarLog, tensorboard_installed
from .stores import close_stores, found_summary, open_stores, parse_store_args, store_provenance, test_store_paths

MODEL_KIND = "ccreid model"
TRAIN_FIGURES = "train_figures"  # the method's pictures of the trained model (3DSL: reconstructions.png)


def train(cfg: dict, lists: str, images: str, out: Path, device_name: str = "auto",
          stores: dict[str, str] | None = None, resources: dict | None = None) -> Path:
    """resources: files a method reads besides images and stores (3DSL: body_model, mocap; DeSKPro: teacher)."""
    device = pick_device(device_name)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    D.init_from_env(device)
    seed_everything(cfg["seed"] + D.rank())
    torch.set_num_threads(max(1, torch.get_num_threads() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))
    h = config_hash(cfg)
    out.mkdir(parents=True, exist_ok=True)
    meta, splits = read_lists(lists)  # every line checked: paths, duplicates, dense training labels
    train_samples = splits["train"]
    if not train_samples:
        raise InputError(f"{lists}/train.txt: no training samples")
    num_pids = 1 + max(s.pid for s in train_samples)
    p2c = pid2clothes(train_samples) if meta["has_clothes"] else None
    d = cfg["data"]
    pack = ImagePack(images)
    pack.check_lists(lists)
    opened = open_stores(stores or {}, pack.manifest_sha256)
    preprocessing = store_provenance(opened)
    identity = run_identity(h, pack.manifest_sha256, lists, opened, resources or {}, D.world_size())
    kind = method_class(cfg)
    dataset = kind.training_dataset(pack, train_samples, augment_place(cfg, device), opened, bool(meta.get("video")))
    if D.rank() == 0:
        for line in found_summary(opened, pack, train_samples, "training"):
            print(line, flush=True)
    for store in opened.values():
        store.close()  # datasets copy what they need: h5py handles must not cross into loader workers
    identities = SAMPLERS.get(d["sampler"])(dataset.pids, d, cfg["seed"], D.rank(), D.world_size(),
                                            kind.sampler_clothes(cfg, dataset))
    sampler = SeededDraws(identities, cfg["seed"], D.rank())
    # the loader's own generator: DataLoader draws its worker base seed from it, and drawing that from the
    # global generator (the default) would shift dropout and every later draw when a run resumes
    loader = DataLoader(dataset, batch_size=d["batch_size"], sampler=sampler, num_workers=d["workers"],
                        drop_last=True, pin_memory=device.type == "cuda", persistent_workers=d["workers"] > 0,
                        generator=torch.Generator().manual_seed(cfg["seed"]))
    if len(loader) == 0:
        raise InputError(f"{lists}/train.txt: {len(dataset)} training items give no full batch of {d['batch_size']}")
    # the run's identity too: a method that trains from another's model (DeSKPro's teacher) checks it was
    # trained on the same images and lists
    method = build_method(cfg, num_pids, p2c, device, {**(resources or {}), "run": identity})
    if D.is_distributed():
        method.wrap_distributed(device)

    test_stores = test_store_paths(cfg, stores or {})

    def periodic_eval(epoch: int) -> dict:
        opened_test = open_stores(test_stores, pack.manifest_sha256)
        try:
            metrics, _ = evaluate_protocols(method.feature_net(), pack, lists, device, lambda samples, video:
                                            kind.test_dataset(pack, samples, cfg, opened_test, video))
        finally:
            close_stores(opened_test)
        return {name: {k: round(m[k], 4) for k in ("mAP", "rank1")} for name, m in metrics.items()}

    ckpt = checkpoint_path(out, identity)
    if D.rank() == 0:
        discard_other_runs(out, ckpt, identity)
    scalars = ScalarLog(out / "tensorboard" / run_key(identity)) if D.rank() == 0 and tensorboard_installed() \
        else None
    try:
        fit(method, loader, sampler, cfg["epochs"], device, Precision(device, cfg["amp"]), ckpt, identity,
            history=out / "history.jsonl", evaluate=periodic_eval if D.rank() == 0 else None,
            eval_every=cfg["eval_every"], on_epoch=scalars.epoch if scalars else None)
    finally:
        if scalars:
            scalars.close()
    model_path = out / "model.pt"
    # every process checks (DDP keeps their weights equal), so none is left waiting at the barrier below
    bad = nonfinite_tensors(method.feature_net().state_dict())
    if bad:  # e.g. BN statistics that overflowed although every loss and gradient stayed finite
        raise TrainingDiverged(f"the trained feature net holds NaN or infinite values in {len(bad)} tensors "
                               f"(first: {bad[0]}); {model_path} was not written")
    if D.rank() == 0:
        feature_net = method.feature_net()
        figures = out / TRAIN_FIGURES
        figures.mkdir(exist_ok=True)  # the train rule's output even where a method draws nothing
        report = method.write_report(figures, dataset)
        save_torch_file({"kind": MODEL_KIND, "feature_net": feature_net.state_dict(),
                         "feature_net_spec": method.feature_net_spec(),
                         "report": report, "config": cfg, "config_hash": h, "run": identity,
                         "dataset": meta["dataset"], "num_train_pids": num_pids,
                         "num_train_clothes": 0 if p2c is None else int(p2c.shape[1]),
                         "train_epoch_seconds": sum(json.loads(line)["seconds"] for line in
                                                    (out / "history.jsonl").read_text().splitlines()),
                         "git_commit": git_commit(Path(__file__).parent), "device": str(device),
                         "hardware": hardware(device), "preprocessing": preprocessing,
                         "world_size": D.world_size()}, model_path)
    if D.is_distributed():
        torch.distributed.barrier()
    if D.rank() == 0:
        shutil.rmtree(ckpt.parent)  # model.pt holds the result; a finished run's checkpoint is never resumed
        if not any(ckpt.parent.parent.iterdir()):
            ckpt.parent.parent.rmdir()
    if D.is_distributed():
        torch.distributed.destroy_process_group()
    return model_path


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method-config", required=True)
    ap.add_argument("--scale", default="paper", help="paper (the defaults) or a scale named in the method config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. epochs=3")
    ap.add_argument("--lists", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--store", action="append", default=[], metavar="STAGE=PATH",
                    help="a preprocessing store the method requires, "
                         "e.g. keypoints=data/derived/prcc/keypoints/mediapipe.h5")
    ap.add_argument("--body-model", default=None, help="SMPL-format body model .pkl (3DSL)")
    ap.add_argument("--mocap", default=None,
                    help="real SMPL parameters: an AMASS-style .npz or a folder of them (3DSL)")
    ap.add_argument("--teacher", default=None,
                    help="the teacher's model.pt a student trains from (DeSKPro: results/<dataset>/deskpro_teacher)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    a = ap.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    # the dataset's format selects the method file's dataset_defaults (DeSKPro's T and α for PRCC)
    cfg = load_method_config(a.method_config, a.scale, a.set, read_protocol(a.lists)["format"])
    out = Path(a.out)
    if os.environ.get("RANK", "0") == "0":
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "train_config.json", json.dumps(cfg, indent=2))
    resources = {"body_model": a.body_model, "mocap": a.mocap, "teacher": a.teacher}
    path = train(cfg, a.lists, a.images, out, a.device, parse_store_args(a.store), resources)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
