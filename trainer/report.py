"""python -m trainer.report results/<dataset>/<method>/metrics.json ...  — a side-by-side table."""
from __future__ import annotations

import json
import sys


def table(paths: list[str]) -> str:
    reports = []
    for path in paths:
        with open(path) as fh:
            reports.append(json.load(fh))
    w = max([len("dataset")] + [len(r["dataset"]) for r in reports])
    rows = [f"{'dataset':<{w}} method     protocol   mAP    R1     R5     R10    R20   queries"]
    for report in reports:
        for name, m in report["protocols"].items():
            rows.append(f"{report['dataset']:<{w}} {report['method']:<10} {name:<8} "
                        + " ".join(f"{100 * m[k]:6.1f}" for k in ("mAP", "rank1", "rank5", "rank10", "rank20"))
                        + f"  {m['num_valid_queries']:>6}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m trainer.report METRICS_JSON [...]", file=sys.stderr)
        return 2
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
