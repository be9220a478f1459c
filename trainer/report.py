"""python -m trainer.report results/<dataset>/<method>/metrics.json ...  — a side-by-side table."""
from __future__ import annotations

import sys

from pipeline.cli import reports_user_errors

from .metrics_file import read_metrics_file


def metric_rows(report: dict) -> list[tuple[str, str, dict]]:
    """(method label, protocol, metrics): the method's result, then each further stream it reports alone
    (DeSKPro: all = face ⊕ body is the result; body and face follow as deskpro[body], deskpro[face])."""
    rows = [(report["method"], name, m) for name, m in report["protocols"].items()]
    streams = list(report.get("streams", {}).items())
    for stream, protocols in streams[1:]:
        rows += [(f"{report['method']}[{stream}]", name, m) for name, m in protocols.items()]
    return rows


def table(paths: list[str]) -> str:
    reports = [read_metrics_file(path) for path in paths]
    w = max([len("dataset")] + [len(r["dataset"]) for r in reports])
    rows = [(r["dataset"], *row) for r in reports for row in metric_rows(r)]
    mw = max([len("method")] + [len(method) for _, method, _, _ in rows])
    out = [f"{'dataset':<{w}} {'method':<{mw}} protocol   mAP    R1     R5     R10    R20   queries"]
    for dataset, method, name, m in rows:
        out.append(f"{dataset:<{w}} {method:<{mw}} {name:<8} "
                   + " ".join(f"{100 * m[k]:6.1f}" for k in ("mAP", "rank1", "rank5", "rank10", "rank20"))
                   + f"  {m['num_valid_queries']:>6}")
    return "\n".join(out)


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m trainer.report METRICS_JSON [...]", file=sys.stderr)
        return 2
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
