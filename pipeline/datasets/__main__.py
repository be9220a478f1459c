"""python -m pipeline.datasets                          list the supported formats and their layouts
python -m pipeline.datasets check --format F --root R   read a raw dataset and report what is found and wrong

Run `check` before an expensive job: it parses every file name, prints the per-split summary and
compares it with the published counts (docs/datasets.md#published-counts).
"""
from __future__ import annotations

import argparse
import sys

from ..cli import reports_user_errors
from . import FORMATS, load
from .base import summary_table
from .counts import compare_counts


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.datasets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command")
    check = sub.add_parser("check", help="check a raw dataset root")
    check.add_argument("--format", required=True, choices=FORMATS.names())
    check.add_argument("--root", required=True)
    a = ap.parse_args(argv)
    if a.command != "check":
        for fmt, spec in FORMATS.items():
            print(f"{fmt:<14} <root>/{spec.layout}")
        return 0
    data = load(a.format, a.root)
    print(f"{a.format} at {a.root}")
    print(summary_table(data), end="")
    problems = compare_counts(data)
    for w in problems:
        print(f"warning: {w}")
    print("counts match the published ones" if not problems
          else f"{len(problems)} count(s) differ from the published ones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
