"""Preprocessing backends on this machine: throughput, quality against the synthetic truth, and sharding.

python benchmarks/bench_stages.py [--ids 24] [--images-per-camera 3] [--trait-spread 1 --head-scale 1]
                                  [--only keypoints/mediapipe faces/mediapipe ...] [--no-extras]

Generates a synthetic dataset (fixed seed), packs it, then for each backend runs the stage CLI as one
shard and reports images/s, found rate and quality (silhouette IoU, keypoint PCK@0.1 of person height).
The weight-loading backends run with random weights in the official format (no checkpoints are
downloadable here): their speed is real, their quality is not, so it is not printed. SAM vit_b is timed on
a few images through the backend directly (about 20 s each on this CPU).
Finally it times GrabCut as 1 shard in one process against 2 shards in two processes at once (the
baseline and the sharded run measured in the same invocation) and prints the speed-up.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BACKENDS = [("keypoints", "groundtruth"), ("keypoints", "mediapipe"), ("silhouettes", "grabcut"),
            ("silhouettes", "mediapipe"), ("silhouettes", "groundtruth"), ("parsing", "keypoint-geometry"),
            ("cloth_masks", "parsing"), ("faces", "mediapipe"), ("faces", "mediapipe/whole-crop"),
            ("faces_restored", "bicubic"),
            # as the benchmark's config wires them (synthetic_bench reads keypoints and silhouettes from the truth)
            ("parsing", "keypoint-geometry/truth"), ("faces", "mediapipe/truth-keypoints")]
# the stores each backend reads, as the default workflow wires them
INPUTS = {("silhouettes", "grabcut"): ["keypoints-mediapipe"],
          ("parsing", "keypoint-geometry"): ["keypoints-mediapipe", "silhouettes-grabcut"],
          ("cloth_masks", "parsing"): ["parsing-keypoint-geometry"], ("faces", "mediapipe"): ["keypoints-mediapipe"],
          ("faces", "mediapipe/whole-crop"): ["keypoints-mediapipe"],
          ("parsing", "keypoint-geometry/truth"): ["keypoints-groundtruth", "silhouettes-groundtruth"],
          ("faces", "mediapipe/truth-keypoints"): ["keypoints-groundtruth"],
          ("faces_restored", "bicubic"): ["faces-mediapipe"]}


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.stages", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait(*procs: subprocess.Popen) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"stage run failed:\n{err[-2000:]}")


def stage_args(work: Path, stage: str, backend: str, shard: int, shards: int, out: Path) -> list[str]:
    name, _, variant = backend.partition("/")
    args = ["run", "--stage", stage, "--backend", name, "--images", str(work / "images.h5"), "--shard", str(shard),
            "--num-shards", str(shards), "--out", str(out)]
    if backend == "groundtruth":
        args += ["--model-file", str(work / "raw/groundtruth/groundtruth.h5")]
    for store in INPUTS.get((stage, backend), []):
        args += ["--input-store", str(work / f"{store}.h5")]
    if stage == "cloth_masks":
        scheme = yaml.safe_load((REPO / "config/config.yaml").read_text())["cloth_schemes"]["keypoint-geometry"]
        args += ["--params", json.dumps({"label_set": "keypoint-geometry", **scheme})]
    if variant == "whole-crop":  # the detector on the crop as it is: what the head region is measured against
        args += ["--params", json.dumps({"head_region": False, "model_selection": 1})]
    return args


def describe(stage: str, q: dict | None) -> str:
    if q is None:
        return "-"
    if stage == "keypoints":
        return f"PCK@0.1 {q['pck@0.1']:.3f} (on found images {q['pck@0.1_found']:.3f})"
    if stage == "silhouettes":
        return f"mean IoU {q['mean_iou']:.3f}"
    if stage == "parsing":
        return f"mIoU {q['miou']:.3f} " + " ".join(f"{k} {v:.2f}" for k, v in q["iou_per_class"].items())
    return (f"face found {q['found_rate']:.1%} of {q['with_face']} visible, box IoU {q['mean_box_iou']:.3f}, "
            f"false on back views {q['false_detection_rate_back_views']:.1%}")


def random_weight_backends(work: Path, n: int, sam_images: int = 3) -> None:
    import numpy as np
    import torch

    from pipeline.imagepack import ImagePack
    from pipeline.stages.backends import Item, build
    from pipeline.stages.fastpose import FastPose
    from pipeline.stages.silhouettes import sam_architecture

    print("\nrandom weights in the official formats (speed only):")
    torch.save(FastPose().state_dict(), work / "fast_res50_256x192.pth")
    args = stage_args(work, "keypoints", "alphapose", 0, 1, work / "ap.shard.h5")
    args += ["--model-file", str(work / "fast_res50_256x192.pth"), "--params", '{"device": "cpu"}']
    t0 = time.perf_counter()
    wait(cli(*args))
    print(f"{'keypoints':<14} {'alphapose':<22} {n / (time.perf_counter() - t0):>7.1f} img/s  "
          f"(FastPose, CLI, {n} images)")
    from retinaface.predict_single import Model as RetinaFaceModel

    from pipeline.stages.schp import SCHPNet

    pack = ImagePack(work / "images.h5")
    torch.save(SCHPNet(18).state_dict(), work / "schp-atr.pth")
    from pipeline.stages.gpen import FullGenerator
    from pipeline.stages.store import encode_rgb

    torch.save(RetinaFaceModel(max_size=320).model.state_dict(), work / "retinaface.pth")
    torch.save(FullGenerator(512, 512, 8, 2, 1.0).state_dict(), work / "gpen512.pth")
    face = {"faces": {"crop_png": encode_rgb(np.full((224, 224, 3), 128, np.uint8)), "found": np.bool_(True)}}
    for stage, name, params, f, count in (("parsing", "schp-atr", {"device": "cpu"}, "schp-atr.pth", 5),
                                          ("faces", "retinaface", {"device": "cpu"}, "retinaface.pth", 20),
                                          ("faces_restored", "gpen", {"size": 512, "device": "cpu"}, "gpen512.pth", 2)):
        backend = build(stage, name, params, str(work / f))
        t0 = time.perf_counter()
        for i in range(count):
            backend(pack.image(i), Item(i, pack.paths[i], face))
        print(f"{stage:<14} {name:<22} {count / (time.perf_counter() - t0):>7.2f} img/s  "
              f"(backend call, {count} images)")
    for model_type, count in (("tiny", 20), ("vit_b", sam_images)):
        torch.save(sam_architecture(model_type).state_dict(), work / f"sam_{model_type}.pth")
        backend = build("silhouettes", "sam", {"model_type": model_type, "device": "cpu"},
                        str(work / f"sam_{model_type}.pth"))
        kp = {"keypoints": np.tile([[30.0, 60.0, 0.9]], (17, 1)).astype(np.float32), "found": np.bool_(True)}
        t0 = time.perf_counter()
        for i in range(count):
            backend(pack.image(i), Item(i, pack.paths[i], {"keypoints": kp}))
        print(f"{'silhouettes':<14} {'sam ' + model_type:<22} {count / (time.perf_counter() - t0):>7.2f} img/s  "
              f"(backend call, {count} images{', a test-only size' if model_type == 'tiny' else ''})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=int, default=24, help="identities (train + test) of the synthetic set")
    ap.add_argument("--images-per-camera", type=int, default=3)
    ap.add_argument("--trait-spread", type=float, default=1.0, help="the synthetic people's spread (benchmark: 3)")
    ap.add_argument("--head-scale", type=float, default=1.0, help="their head scale (benchmark: 2)")
    ap.add_argument("--only", nargs="+", metavar="STAGE/BACKEND",
                    help="these backends only (and the stores they read), e.g. faces/mediapipe")
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the random-weight backends and the sharding run")
    a = ap.parse_args()
    backends = BACKENDS
    if a.only:
        known = {f"{stage}/{backend}" for stage, backend in BACKENDS}
        unknown = sorted(set(a.only) - known)
        if unknown:
            ap.error(f"--only: unknown {unknown}; known: {sorted(known)}")
        wanted = set(a.only)
        # BACKENDS lists each backend after the stores it reads: walked backwards, their inputs gather transitively
        for stage, backend in reversed(BACKENDS):
            if f"{stage}/{backend}" in wanted:
                wanted |= {store.replace("-", "/", 1) for store in INPUTS.get((stage, backend), [])}
        backends = [(stage, backend) for stage, backend in BACKENDS if f"{stage}/{backend}" in wanted]
    sys.path.insert(0, str(REPO))
    from pipeline.imagepack import ImagePack
    from pipeline.stages.quality import quality

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        test_ids = max(2, a.ids // 3)
        subprocess.run([sys.executable, "-m", "pipeline.synthetic", "--out", str(work / "raw"), "--seed", "11",
                        "--train-ids", str(a.ids - test_ids), "--test-ids", str(test_ids), "--val-ids", "0",
                        "--images-per-camera", str(a.images_per_camera), "--trait-spread", str(a.trait_spread),
                        "--head-scale", str(a.head_scale), "--jobs", "2"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "pipeline.lists", "--format", "prcc", "--root", str(work / "raw"),
                        "--out", str(work / "lists"), "--no-count-check"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-m", "pipeline.pack", "--lists", str(work / "lists"), "--root",
                        str(work / "raw"), "--out", str(work / "images.h5")], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
        n = len(ImagePack(work / "images.h5"))
        print(f"{n} synthetic images, 1 process each (CPU: {subprocess.getoutput('nproc')} cores)\n")
        print(f"{'stage':<14} {'backend':<22} {'img/s':>7} {'found':>7}  quality vs ground truth")
        for stage, backend in backends:
            shard = work / f"{stage}-{backend.replace('/', '-')}.shard.h5"
            t0 = time.perf_counter()
            wait(cli(*stage_args(work, stage, backend, 0, 1, shard)))
            seconds = time.perf_counter() - t0  # includes start-up and model loading, as a rule's job does
            store = work / f"{stage}-{backend.replace('/', '-')}.h5"
            wait(cli("merge", "--images", str(work / "images.h5"), "--out", str(store), "--summary",
                     str(work / "summary.json"), str(shard)))
            found = json.loads((work / "summary.json").read_text())["found_rate"]
            q = None if stage in ("cloth_masks", "faces_restored") else \
                quality(str(store), str(work / "images.h5"), str(work / "raw/groundtruth/groundtruth.h5"))
            print(f"{stage:<14} {backend:<22} {n / seconds:>7.1f} {found:>7.1%}  {describe(stage, q)}")

        if a.no_extras:
            return
        random_weight_backends(work, n)

        print("\nsharding: GrabCut (seeded by mediapipe keypoints) over all images")
        t0 = time.perf_counter()
        wait(cli(*stage_args(work, "silhouettes", "grabcut", 0, 1, work / "one.h5")))
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        wait(*[cli(*stage_args(work, "silhouettes", "grabcut", k, 2, work / f"two{k}.h5")) for k in range(2)])
        two = time.perf_counter() - t0
        print(f"1 shard, 1 process:    {one:6.1f} s")
        print(f"2 shards, 2 processes: {two:6.1f} s   speed-up {one / two:.2f}x")
        print(json.dumps({"images": n, "one_shard_s": round(one, 2), "two_shards_s": round(two, 2)}))


if __name__ == "__main__":
    main()
