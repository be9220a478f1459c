"""The project's version, written once: in pyproject.toml (`[project] version`).

From a source tree (a checkout, or the workflow's rules, which import the packages from it without installing
them) it is read from pyproject.toml beside the packages; from an installed copy, from its metadata.
"""
from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def project_version() -> str:
    if PYPROJECT.is_file():
        return tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    return importlib.metadata.version("ccreid")
