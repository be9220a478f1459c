#!/usr/bin/env bash
# The test suite (what CI runs): set up, lint (ruff, snakefmt --check, snakemake --lint is a test), then pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
ruff check .
snakefmt --check Snakefile rules/
# Two workers (CCREID_TEST_WORKERS to change): much of the suite waits on subprocesses (snakemake, torchrun, the
# CLIs), so the second core is idle without them. --dist loadfile keeps each file on one worker, so module-scoped
# fixtures (a workflow run shared by a file's tests) are built once. --durations: the slowest tests, to keep CI
# within its 30 minutes.
# -m "": every test, the slow ones too (pyproject.toml's addopts leave them out of a plain `pytest`).
python -m pytest -n "${CCREID_TEST_WORKERS:-2}" --dist loadfile --durations=25 -m "" "$@"
