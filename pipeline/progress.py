"""Progress that shows where people look: tqdm's bar on a terminal, and — where output goes to a file, as under
Snakemake, which redirects every rule to its log and where tqdm turns itself off — a plain line every
`interval` seconds and one at the end: done / total, items per second, ETA.

Written here rather than with tqdm's file output because a non-terminal tqdm writes carriage-return updates,
which a log shows as one ever-growing line.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

from .errors import InputError

T = TypeVar("T")
INTERVAL_ENV = "CCREID_PROGRESS_INTERVAL"  # seconds between log lines (default 30)


def log_interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "30")
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds") from None
    # float() also reads "nan" and "inf", with which no line would come before the end
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{INTERVAL_ENV}={raw!r}: expected a positive, finite number of seconds")
    return value


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _lines(iterable: Iterable[T], desc: str, total: int | None, unit: str, interval: float) -> Iterator[T]:
    t0 = last = time.monotonic()
    done = 0

    def say(final: bool) -> None:
        elapsed = max(time.monotonic() - t0, 1e-9)
        rate = done / elapsed
        of = f"/{total}" if total is not None else ""
        eta = f", ETA {_clock((total - done) / rate)}" if total is not None and rate > 0 and not final else ""
        print(f"{desc}: {done}{of} {unit} ({rate:.2f} {unit}/s, {_clock(elapsed)} elapsed{eta})"
              + (" done" if final else ""), flush=True)

    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= interval:
            say(False)
            last = now
    say(True)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, enabled: bool | None = None,
             unit: str = "it", leave: bool = True) -> Iterator[T]:
    """Iterate with progress. enabled: None — a bar on a terminal, log lines otherwise; True — a bar; False —
    nothing."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if enabled is False:
        return iter(iterable)
    if enabled or sys.stderr.isatty():
        return iter(tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave))
    return _lines(iterable, desc, total, unit, log_interval())
