#!/usr/bin/env bash
# GPU smoke check: the CUDA, AMP, resume, nccl and video paths on tiny data, through the same CLIs the
# workflow calls, and the AlphaPose / SAM / SCHP / GPEN backends on cuda (random weights, images/s). Needs one CUDA GPU and torch, torchvision, h5py, opencv, pyyaml, tqdm and pytest
# importable by $PYTHON (default python3). Run from the repository root; about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
W=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total --format=csv
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

$PY -m pipeline.synthetic --out "$W/raw" --seed 1 --train-ids 8 --test-ids 4 --val-ids 1 --images-per-camera 3 --jobs 8 > "$W/syn.log"
$PY -m pipeline.lists --format prcc --root "$W/raw" --out "$W/lists" --no-count-check > /dev/null
$PY -m pipeline.pack --lists "$W/lists" --root "$W/raw" --out "$W/images.h5"
train() { $PY -m trainer.train --method-config config/methods/cal.yaml --scale tiny --lists "$W/lists" --images "$W/images.h5" --device cuda "$@"; }
for amp in false true; do
    train --set amp=$amp --set epochs=3 --out "$W/amp_$amp" | tail -2
    $PY -m trainer.evaluate --model "$W/amp_$amp/model.pt" --lists "$W/lists" --images "$W/images.h5" \
        --out "$W/amp_$amp/metrics.json" --device cuda | tail -2
done
echo "an AMP run killed after its first checkpoint, then rerun (must resume, not retrain):"
# the trainer itself in the background (not the train function, whose subshell would be killed instead)
$PY -m trainer.train --method-config config/methods/cal.yaml --scale tiny --lists "$W/lists" --images "$W/images.h5" \
    --device cuda --set amp=true --set epochs=40 --out "$W/killed" > "$W/killed.log" 2>&1 &
pid=$!
until compgen -G "$W/killed/checkpoints/*/last.pt" > /dev/null; do sleep 0.1; done
kill -9 $pid; wait $pid || true
train --set amp=true --set epochs=40 --out "$W/killed" | grep -i resum
echo "DDP under torchrun with nccl, one rank:"
$PY -m torch.distributed.run --nproc_per_node 1 -m trainer.train --method-config config/methods/cal.yaml --scale tiny \
    --lists "$W/lists" --images "$W/images.h5" --out "$W/ddp" --device cuda | tail -1
echo "video (a fake CCVID, as the tests build it) on cuda with AMP:"
W="$W" $PY - <<'PY'
import json, os, pathlib
from tests.test_video import ccvid_tree
from pipeline.datasets import load
from pipeline.listfile import write_lists
from pipeline.pack import main as pack_main
from trainer.config import load_method_config
from trainer.evaluate import main as evaluate_main
from trainer.train import train

w = pathlib.Path(os.environ["W"]) / "video"
ccvid_tree(w / "raw")
write_lists(load("ccvid", w / "raw"), w / "lists", "ccvid", w / "raw")
pack_main(["--lists", str(w / "lists"), "--root", str(w / "raw"), "--out", str(w / "images.h5")])
cfg = load_method_config("config/methods/cal.yaml", "tiny",
                         ["model.pooling=max", "data.video.seq_len=4", "data.video.dense_step=8", "amp=true"])
model = train(cfg, str(w / "lists"), str(w / "images.h5"), w / "out", "cuda")
evaluate_main(["--model", str(model), "--lists", str(w / "lists"), "--images", str(w / "images.h5"),
               "--out", str(w / "metrics.json"), "--device", "cuda"])
print("evaluated on", json.loads((w / "metrics.json").read_text())["provenance"]["device_eval"])
PY
echo "weight-loading preprocessing backends on cuda (random weights in the official formats):"
W="$W" $PY - <<'PY'
import os, pathlib, time
import numpy as np, torch
from pipeline.imagepack import ImagePack
from pipeline.stages.backends import Item, build
from pipeline.stages.fastpose import FastPose
from pipeline.stages.gpen import FullGenerator
from pipeline.stages.schp import SCHPNet
from pipeline.stages.store import encode_rgb
from pipeline.stages.silhouettes import sam_architecture

w = pathlib.Path(os.environ["W"])
pack = ImagePack(w / "images.h5")
torch.save(FastPose().state_dict(), w / "fastpose.pth")
torch.save(sam_architecture("vit_b").state_dict(), w / "sam_vit_b.pth")
torch.save(SCHPNet(18).state_dict(), w / "schp_atr.pth")
torch.save(FullGenerator(512, 512, 8, 2, 1.0).state_dict(), w / "gpen512.pth")
face = {"crop_png": encode_rgb(np.full((224, 224, 3), 128, np.uint8)), "found": np.bool_(True)}
kp = {"keypoints": np.tile([[30.0, 60.0, 0.9]], (17, 1)).astype(np.float32), "found": np.bool_(True)}
for stage, name, params, f in (("keypoints", "alphapose", {"flip": True}, "fastpose.pth"),
                               ("silhouettes", "sam", {"model_type": "vit_b"}, "sam_vit_b.pth"),
                               ("parsing", "schp-atr", {}, "schp_atr.pth"),
                               ("faces_restored", "gpen", {"size": 512}, "gpen512.pth")):
    backend = build(stage, name, params, str(w / f))
    backend(pack.image(0), Item(0, pack.paths[0], {"keypoints": kp, "faces": face}))  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(len(pack)):
        backend(pack.image(i), Item(i, pack.paths[i], {"keypoints": kp, "faces": face}))
    torch.cuda.synchronize()
    print(f"{stage}/{name} on {torch.cuda.get_device_name()}: {len(pack) / (time.perf_counter() - t0):.1f} img/s")
PY
# batched inference (issue 15): images/s of each learned backend at batch 1 vs 16, outputs compared
python benchmarks/bench_batched_backends.py --device cuda --images 64 --batch 16
# the training input pipeline: a worker's CPU µs per image with the augmentation on the worker vs on the GPU
python benchmarks/bench_input_pipeline.py --device cuda --images 512 --batch 32
echo "gpu smoke check passed ($W)"
