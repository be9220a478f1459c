"""HTML tables for the report: metrics across methods, and what a dataset holds (splits, protocols, stages).

Self-contained HTML (inline style, no scripts): Snakemake's report shows it in a frame as it is.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

from pipeline.errors import InputError
from pipeline.stages.quality import PERCENTS, format_flag, format_value

from ..metrics_file import read_metrics_file
from ..report import metric_rows, run_label

STYLE = ("<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin:8px 0}"
         "th,td{border:1px solid #bbb;padding:3px 7px;text-align:right}th{background:#eee}"
         "td.l,th.l{text-align:left}caption{text-align:left;font-weight:bold;padding:4px 0}</style>")
METRIC_COLUMNS = (("mAP", "mAP"), ("R1", "rank1"), ("R5", "rank5"), ("R10", "rank10"), ("mINP", "mINP"))


def read_metrics(paths: list[str | Path]) -> list[dict]:
    """metrics.json files of one dataset, checked: each names its dataset and method once."""
    reports = [read_metrics_file(path) for path in paths]
    seen: dict[tuple, str] = {}
    for path, r in zip(paths, reports, strict=True):
        key = (r["dataset"], run_label(r), tuple(r.get("test_overrides", [])))
        if key in seen:
            raise InputError(f"{path} and {seen[key]} both hold {r['dataset']}/{run_label(r)}")
        seen[key] = str(path)
    return reports


def _table(caption: str, header: list[str], rows: list[list[str]], left: int = 1, left_last: bool = False) -> str:
    """left: how many leading columns are text (left-aligned); left_last: the last one is text too."""
    def cells(tag, values):
        return "".join(f"<{tag}{' class=l' if i < left or (left_last and i == len(values) - 1) else ''}>{v}</{tag}>"
                       for i, v in enumerate(values))
    body = "".join(f"<tr>{cells('td', [escape(str(v)) for v in row])}</tr>" for row in rows)
    return (f"<table><caption>{escape(caption)}</caption><tr>{cells('th', [escape(h) for h in header])}</tr>"
            f"{body}</table>")


def short_commit(commit: str) -> str:
    """A provenance commit as tables show it: 12 hex digits, keeping the '-dirty' mark of uncommitted changes."""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def metrics_table_html(paths: list[str | Path]) -> str:
    """Every protocol of every method (and each further stream a method reports alone), in %, with the
    provenance that says which run the numbers are: config hash, commits, seed, scale, test overrides, and the
    stage backends of the stores it trained with."""
    reports = read_metrics(paths)
    rows = []
    for r in reports:
        p = r["provenance"]
        label = run_label(r) + (f" ({', '.join(r['test_overrides'])})" if r.get("test_overrides") else "")
        for method, name, m in metric_rows(r):
            rows.append([label + method[len(run_label(r)):], name, f"{m['query']} → {m['gallery']} ({m['mode']})",
                         *(f"{100 * m[k]:.1f}" for _, k in METRIC_COLUMNS), m["num_valid_queries"],
                         r["scale"], p["config_hash"], short_commit(p["git_commit_train"]), p["seed"],
                         preprocessing(p)])
    datasets = sorted({r["dataset"] for r in reports})
    header = ["method", "protocol", "query → gallery (mode)", *(h for h, _ in METRIC_COLUMNS), "queries", "scale",
              "config hash", "commit (train)", "seed", "preprocessing"]
    return (f"<!doctype html><html><head><meta charset=utf-8>{STYLE}</head><body>"
            + _table(f"{', '.join(datasets)}: retrieval (%)", header, rows, left=3, left_last=True)
            + "</body></html>\n")


def preprocessing(provenance: dict) -> str:
    """The stage backends a run trained with ("keypoints: mediapipe, ..."), as its metrics.json records them."""
    if "preprocessing" not in provenance:
        return "not recorded"
    stores = provenance["preprocessing"]
    return ", ".join(f"{stage}: {stores[stage]}" for stage in sorted(stores)) or "none"


QUALITY_HEADER = ["stage", "backend", "measure", "over", "n", *(f"{p}%" if p != 50 else "median" for p in PERCENTS),
                  "flagged"]


def quality_rows(summary: dict) -> list[list]:
    """A stage summary's quality measures (pipeline.stages.quality.cue_quality, written at merge) as table rows; a
    summary merged before they were kept says so."""
    stage, backend = summary["stage"], summary["backend"]
    if "quality" not in summary:
        return [[stage, backend, "not recorded (merged before merge measured quality; merge it again)", "", "",
                 *([""] * len(PERCENTS)), ""]]
    rows = []
    for m in summary["quality"].values():
        quantiles = [format_value(m["quantiles"][str(p)], m["unit"]) if m["n"] else "–" for p in PERCENTS]
        rows.append([stage, backend, m["what"], m["over"], m["n"], *quantiles,
                     ", ".join(format_flag(f, m["unit"]) for f in m["flags"])])
    return rows


def dataset_summary_html(protocol_json: str | Path, stage_summaries: list[str | Path]) -> str:
    """The lists' splits and protocols (protocol.json), each preprocessing stage's found rate and what its found
    outputs look like."""
    meta = json.loads(Path(protocol_json).read_text())
    splits = [[name, s.get("ids", ""), s.get("tracklets", ""), s.get("images", ""), s.get("clothes", ""),
               s.get("cameras", "")] for name, s in meta["splits"].items()]
    protocols = [[p["name"], p["query"], p["gallery"], p["mode"], p.get("single_shot_trials") or "",
                  ", ".join(map(str, p["cameras"])) if p.get("cameras") else "all"] for p in meta["protocols"]]
    stages, quality = [], []
    for path in stage_summaries:
        s = json.loads(Path(path).read_text())
        stages.append([s["stage"], s["backend"], s["images"], s["found"], f"{100 * s['found_rate']:.1f}"])
        quality += quality_rows(s)
    notes = "".join(f"<li>{escape(n)}</li>" for n in meta.get("notes", []))
    return (f"<!doctype html><html><head><meta charset=utf-8>{STYLE}</head><body>"
            f"<p>{escape(meta['dataset'])} (format {escape(meta['format'])}, clothes labels: "
            f"{escape(str(meta.get('clothes_labels')))}{', video' if meta.get('video') else ''})</p>"
            + _table("splits", ["split", "ids", "tracklets", "images", "clothes", "cameras"], splits)
            + _table("protocols", ["protocol", "query", "gallery", "mode", "single-shot trials", "cameras"],
                     protocols, left=4)
            + (_table("preprocessing stages", ["stage", "backend", "images", "found", "found (%)"], stages, left=2)
               if stages else "")
            + (_table("what was found: quantiles over the found images, and the degenerate ones", QUALITY_HEADER,
                      quality, left=4, left_last=True) if quality else "")
            + (f"<ul>{notes}</ul>" if notes else "") + "</body></html>\n")
