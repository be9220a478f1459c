"""python -m pipeline.lists --format prcc --root RAW_ROOT --out OUT_DIR [--name DATASET]

Reads a raw dataset in its authors' layout and writes one list file per split plus protocol.json.
"""
from __future__ import annotations

import argparse
import sys

from .cli import reports_user_errors
from .datasets import REGISTRY, load
from .datasets.counts import compare_counts
from .listfile import write_lists


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.lists", description=__doc__)
    ap.add_argument("--format", required=True, choices=sorted(REGISTRY))
    ap.add_argument("--root", required=True, help="dataset root as the adapter expects it")
    ap.add_argument("--out", required=True, help="directory for <split>.txt and protocol.json")
    ap.add_argument("--name", default=None, help="dataset name recorded in protocol.json (default: the format)")
    ap.add_argument("--no-count-check", action="store_true",
                    help="skip the comparison with published split sizes (generated data)")
    a = ap.parse_args(argv)
    data = load(a.format, a.root)
    meta = write_lists(data, a.out, a.name or a.format, a.root)
    print(f"{'split':<12} {'ids':>6} {'images':>8} {'clothes':>8} {'cameras':>8}")
    for name, s in meta["splits"].items():
        print(f"{name:<12} {s['ids']:>6} {s['images']:>8} {s['clothes']:>8} {s['cameras']:>8}")
    for p in meta["protocols"]:
        print(f"protocol {p['name']}: query {p['query']} vs gallery {p['gallery']} ({p['mode']})")
    if not a.no_count_check:
        for w in compare_counts(data):
            print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
