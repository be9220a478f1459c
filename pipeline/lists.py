"""python -m pipeline.lists --format prcc --root RAW_ROOT --out OUT_DIR [--name DATASET]

Reads a raw dataset in its authors' layout and writes one list file per split (video: plus its
frames file), summary.txt (the per-split table and any count warnings) and protocol.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .atomic import write_text
from .cli import reports_user_errors
from .datasets import FORMATS, load
from .datasets.base import summary_table
from .datasets.counts import compare_counts
from .listfile import write_lists


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.lists", description=__doc__)
    ap.add_argument("--format", required=True, choices=FORMATS.names())
    ap.add_argument("--root", required=True, help="dataset root as the adapter expects it")
    ap.add_argument("--out", required=True, help="directory for <split>.txt and protocol.json")
    ap.add_argument("--name", default=None, help="dataset name recorded in protocol.json (default: the format)")
    ap.add_argument("--no-count-check", action="store_true",
                    help="skip the comparison with published split sizes (generated data)")
    a = ap.parse_args(argv)
    data = load(a.format, a.root)
    warnings = [] if a.no_count_check else [f"warning: {w}\n" for w in compare_counts(data)]
    summary = summary_table(data) + "".join(warnings)
    # the summary file goes first: protocol.json, written last, marks the lists complete
    write_text(Path(a.out) / "summary.txt", summary)
    write_lists(data, a.out, a.name or a.format, a.root)
    print(summary, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
