"""Snakemake's benchmark files (a rule's `benchmark:` directive): a TSV with one row per repeat, wall seconds in
column `s` and peak resident memory in MB in `max_rss` (see the Snakemake docs, "Benchmark rules")."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from .errors import InputError


def read_benchmark_file(path: str | Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one job, the largest over the file's rows (a rule run with
    --benchmark-repeats has several); the RSS is 0 where Snakemake could not sample it ("NA")."""
    path = Path(path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0] or "max_rss" not in rows[0]:
        raise InputError(f"{path}: not a Snakemake benchmark file (a header with columns s and max_rss, then rows)")
    try:
        seconds = [float(r["s"]) for r in rows]
        # max_rss is "NA" (or "-") where the job ended before psutil could sample it
        rss = [float(r["max_rss"]) for r in rows if r["max_rss"] not in ("NA", "-")]
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: a value in column s or max_rss is not a number ({err})") from None
    # float() reads "nan" and "inf" too, which would make every sum and table cell they reach nan or inf
    bad = [v for v in (*seconds, *rss) if not (math.isfinite(v) and v >= 0)]
    if bad:
        raise InputError(f"{path}: {bad[0]} in column s or max_rss: wall seconds and memory are finite and not "
                         "negative; rerun the job or restore its benchmark file")
    return max(seconds), max(rss, default=0.0)
