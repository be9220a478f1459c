"""python -m trainer.report results/<dataset>/<method>/metrics.json ...  — a side-by-side table."""
from __future__ import annotations

import sys

from pipeline.cli import reports_user_errors

from .metrics_file import read_metrics_file


def run_label(report: dict) -> str:
    """The method, and the named experiment its run was trained under (the workflow's experiments:): 3dsl/sam."""
    return report["method"] + (f"/{report['experiment']}" if "experiment" in report else "")


def metric_rows(report: dict) -> list[tuple[str, str, dict]]:
    """(method label, protocol, metrics): the method's result, then each further stream it reports alone
    (DeSKPro: all = face ⊕ body is the result; body and face follow as deskpro[body], deskpro[face]); the
    label names the run's experiment where it has one (3dsl/sam)."""
    label = run_label(report)
    rows = [(label, name, m) for name, m in report["protocols"].items()]
    streams = list(report.get("streams", {}).items())
    for stream, protocols in streams[1:]:
        rows += [(f"{label}[{stream}]", name, m) for name, m in protocols.items()]
    return rows


HEADER = ("dataset", "method", "protocol", "mAP", "R1", "R5", "R10", "R20", "queries", "scale")
TEXT = {"dataset", "method", "protocol", "scale"}  # left-aligned; numbers align right


def table(paths: list[str]) -> str:
    reports = [read_metrics_file(path) for path in paths]
    rows = [[r["dataset"], method, name, *(f"{100 * m[k]:.1f}" for k in ("mAP", "rank1", "rank5", "rank10", "rank20")),
             str(m["num_valid_queries"]), r["scale"]] for r in reports for method, name, m in metric_rows(r)]
    # every column as wide as its widest entry: protocol names (CC_single_shot) and methods vary in length
    widths = [max(len(row[c]) for row in (HEADER, *rows)) for c in range(len(HEADER))]
    return "\n".join("  ".join(v.ljust(w) if h in TEXT else v.rjust(w) for h, v, w in zip(HEADER, row, widths,
                                                                                        strict=True)).rstrip()
                     for row in (HEADER, *rows))


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
