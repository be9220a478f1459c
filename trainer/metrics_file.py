"""metrics.json of trainer.evaluate, read and checked once for every tool that reads it (trainer.report, the
metrics table, the CMC figure, the benchmark table).

A truncated or hand-edited file must stop with its name and what is wrong, never with a KeyError deep in a table,
and a metric that no evaluation can produce (NaN, or 93.0 written as a percentage where metrics.json holds
fractions) must not reach a table as `nan ± nan` or `4667.6`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.errors import InputError

NOT_EVALUATE = "not a metrics.json written by trainer.evaluate"
FRACTIONS = ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP")
PROTOCOL_TEXT = ("query", "gallery", "mode")
PROVENANCE = ("config_hash", "git_commit_train", "seed")


def _mapping(value, where: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{path}: {where} is {value!r}, not a mapping: {NOT_EVALUATE}")
    return value


def _fraction(value, where: str, path: Path) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{path}: {where} is {value!r}, not a number: {NOT_EVALUATE}")
    if not (math.isfinite(value) and 0 <= value <= 1):
        hint = " (a percentage? metrics.json holds fractions)" if 1 < value <= 100 else ""
        raise InputError(f"{path}: {where} is {value}, not a fraction in [0, 1]{hint}")


def _protocols(protocols, where: str, path: Path) -> None:
    if not _mapping(protocols, where, path):
        raise InputError(f"{path}: {where} is empty: {NOT_EVALUATE}")
    for name, m in protocols.items():
        at = f"{where}.{name}"
        _mapping(m, at, path)
        missing = [k for k in (*PROTOCOL_TEXT, *FRACTIONS, "num_valid_queries") if k not in m]
        if missing:
            raise InputError(f"{path}: {at} has no {', '.join(map(repr, missing))}: {NOT_EVALUATE}")
        for k in FRACTIONS:
            _fraction(m[k], f"{at}.{k}", path)
        # absent from files written before evaluation kept the curve, and the random ranking's (chance_cmc)
        for curve in ("cmc", "chance_cmc"):
            values = m.get(curve, [])
            if not isinstance(values, list):
                raise InputError(f"{path}: {at}.{curve} is {values!r}, not a list: {NOT_EVALUATE}")
            for rank, v in enumerate(values, 1):
                _fraction(v, f"{at}.{curve} at rank {rank}", path)
        for count in ("num_valid_queries", "num_gallery"):
            if count in m and (isinstance(m[count], bool) or not isinstance(m[count], int)):
                raise InputError(f"{path}: {at}.{count} is {m[count]!r}, not a count: {NOT_EVALUATE}")


def read_metrics_file(path: str | Path) -> dict:
    """One metrics.json, checked: JSON; dataset, method and scale; every protocol (and stream) with its fractions
    finite and in [0, 1]; the provenance the tables print. Anything else is an InputError naming the file and
    the key."""
    path = Path(path)
    try:
        report = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not JSON ({e}): truncated or edited? evaluate the run again") from None
    _mapping(report, "the file", path)
    for key in ("dataset", "method", "scale", "protocols", "provenance"):
        if key not in report:
            raise InputError(f"{path}: no {key!r}: {NOT_EVALUATE}")
    for key in ("dataset", "method", "scale", *(["experiment"] if "experiment" in report else [])):
        if not isinstance(report[key], str):
            raise InputError(f"{path}: {key} is {report[key]!r}, not a name: {NOT_EVALUATE}")
    _protocols(report["protocols"], "protocols", path)
    for stream, protocols in _mapping(report.get("streams", {}), "streams", path).items():
        _protocols(protocols, f"streams.{stream}", path)
    missing = [k for k in PROVENANCE if k not in _mapping(report["provenance"], "provenance", path)]
    if missing:
        raise InputError(f"{path}: its provenance has no {', '.join(missing)}: {NOT_EVALUATE}")
    # stage -> backend of the stores the model trained with; absent from files evaluated before it was recorded
    for stage, backend in _mapping(report["provenance"].get("preprocessing", {}), "provenance.preprocessing",
                                   path).items():
        if not isinstance(backend, str):
            raise InputError(f"{path}: provenance.preprocessing.{stage} is {backend!r}, not a backend name: "
                             f"{NOT_EVALUATE}")
    return report
