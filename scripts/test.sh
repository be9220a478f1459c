#!/usr/bin/env bash
# The test suite (what CI runs): set up, lint (ruff, snakefmt --check, snakemake --lint is a test), then pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
ruff check .
snakefmt --check Snakefile rules/
python -m pytest --durations=25 "$@"   # the slowest tests, to keep CI within its 30 minutes
