#!/usr/bin/env bash
# The demo: set up, generate the synthetic cloth-changing dataset, train and evaluate baseline and CAL
# (METHODS="baseline cal 3dsl deskpro cre_bsga" adds the others),
# print the metrics. Everything runs through the Snakemake DAG; a rerun resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
METHODS=${METHODS:-baseline cal}
targets=$(for m in $METHODS; do echo "results/synthetic/$m/metrics.json"; done)
snakemake --cores "${CORES:-2}" $targets
python -m trainer.report $targets
