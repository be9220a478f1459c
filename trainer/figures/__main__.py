"""python -m trainer.figures FIGURE ...  (ccreid-figures) — one picture or table for the report.

  metrics-table --out T.html METRICS_JSON ...         metrics across methods, with config hash and commit
  cmc --out C.png METRICS_JSON ...                    CMC to rank 50, a panel per protocol
  ranklist --features F.h5 --images images.h5 --lists LISTS --out R.png [--protocol CC] [--queries 6] [--top 10]
  embedding --features F.h5 --lists LISTS --out E.png [--protocol CC] [--max-ids 20]
  curves --history history.jsonl --out H.png [--title T]
  summary --protocol protocol.json --out S.html [STAGE_SUMMARY_JSON ...]
  benchmark-table --dataset D [--oracle D2] --methods M ... --seeds S ... --out T.md --html T.html METRICS_JSON ...
                  [--timings BENCHMARK_TSV ...] [--teachers METHOD=TEACHER ...]
                                                      mean ± std over seeds of SC / CC mAP and rank-1, the oracle,
                                                      and (with --timings) each method's wall time and memory
"""
from __future__ import annotations

import argparse
import sys

from pipeline.atomic import write_text
from pipeline.cli import key_value_args, reports_user_errors


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="figure", required=True)
    t = sub.add_parser("metrics-table", help="HTML table of every protocol of every method")
    t.add_argument("--out", required=True)
    t.add_argument("metrics", nargs="+")
    c = sub.add_parser("cmc", help="CMC curves, a panel per protocol and a curve per method")
    c.add_argument("--out", required=True)
    c.add_argument("metrics", nargs="+")
    r = sub.add_parser("ranklist", help="queries and their top gallery matches, framed by the protocol's rules")
    for p in (r, e := sub.add_parser("embedding", help="t-SNE of test features by identity and clothes")):
        p.add_argument("--features", required=True, help="features.h5 of trainer.evaluate")
        p.add_argument("--lists", required=True, help="the dataset's lists folder (protocol.json)")
        p.add_argument("--out", required=True)
        p.add_argument("--protocol", default=None, help="default: CC where the dataset has it, else the first")
    r.add_argument("--images", required=True, help="images.h5 the features were extracted from")
    r.add_argument("--queries", type=int, default=6)
    r.add_argument("--top", type=int, default=10)
    e.add_argument("--max-ids", type=int, default=20)
    h = sub.add_parser("curves", help="training curves of history.jsonl")
    h.add_argument("--history", required=True)
    h.add_argument("--out", required=True)
    h.add_argument("--title", default="")
    s = sub.add_parser("summary", help="HTML: a dataset's splits, protocols and stage found rates")
    s.add_argument("--protocol", required=True, help="the lists' protocol.json")
    s.add_argument("--out", required=True)
    s.add_argument("stages", nargs="*", help="<stage>/<backend>.summary.json files")
    b = sub.add_parser("benchmark-table", help="Markdown + HTML: methods over seeds, and the oracle")
    b.add_argument("--dataset", required=True, help="the dataset the methods are compared on")
    b.add_argument("--oracle", default=None, help="its clothes-free twin, where --oracle-method trains and tests")
    b.add_argument("--oracle-method", default="baseline")
    b.add_argument("--methods", nargs="+", required=True)
    b.add_argument("--seeds", nargs="+", type=int, required=True)
    b.add_argument("--out", required=True, help="the Markdown table")
    b.add_argument("--html", required=True, help="the same table as HTML, for the report")
    b.add_argument("--timings", nargs="+", default=None,
                   help="the runs' train.benchmark.tsv and evaluate.benchmark.tsv (Snakemake's benchmark files, "
                        "beside each metrics.json): adds each method's wall time and peak memory")
    b.add_argument("--teachers", nargs="+", default=[], metavar="METHOD=TEACHER",
                   help="a method that trains from another's model (deskpro=deskpro_teacher): with --timings, its cost "
                        "includes the teacher's train.benchmark.tsv of the same seed, which --timings must list")
    b.add_argument("metrics", nargs="+")
    a = ap.parse_args(argv)
    # imported per figure: matplotlib, h5py and scikit-learn load only where they are drawn
    if a.figure == "metrics-table":
        from .tables import metrics_table_html
        write_text(a.out, metrics_table_html(a.metrics))
    elif a.figure == "cmc":
        from .cmc import plot_cmc
        plot_cmc(a.metrics, a.out)
    elif a.figure == "ranklist":
        from .ranklist import rank_list
        rank_list(a.features, a.images, a.lists, a.out, a.protocol, a.queries, a.top)
    elif a.figure == "embedding":
        from .embedding import plot_embedding
        plot_embedding(a.features, a.lists, a.out, a.protocol, a.max_ids)
    elif a.figure == "curves":
        from .curves import plot_curves
        plot_curves(a.history, a.out, a.title)
    elif a.figure == "benchmark-table":
        from .benchmark import benchmark_rows, table_html, table_markdown
        rows = benchmark_rows(a.metrics, a.dataset, a.oracle, a.methods, a.seeds, a.oracle_method, a.timings,
                              key_value_args(a.teachers, "--teachers", "METHOD=TEACHER"))
        write_text(a.html, table_html(rows, a.dataset))
        write_text(a.out, table_markdown(rows, a.dataset))
    else:
        from .tables import dataset_summary_html
        write_text(a.out, dataset_summary_html(a.protocol, a.stages))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
