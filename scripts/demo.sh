#!/usr/bin/env bash
# The demo: set up, generate the synthetic cloth-changing dataset, train and evaluate baseline and CAL,
# print the metrics. Everything runs through the Snakemake DAG; a rerun resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
snakemake --cores "${CORES:-2}" results/synthetic/baseline/metrics.json results/synthetic/cal/metrics.json
python -m trainer.report results/synthetic/baseline/metrics.json results/synthetic/cal/metrics.json
