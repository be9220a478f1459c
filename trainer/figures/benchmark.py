"""The benchmark's table: each method trained and evaluated with several seeds on one dataset, mean ± standard
deviation of same-clothes (SC) and clothes-changing (CC) mAP and rank-1 over the seeds, each method's CC mAP
against the baseline's with the standard error of that difference, and the oracle (a method trained and tested
on the dataset's clothes-free twin), which bounds what clothes-changing retrieval can reach on these people.
Given the runs' Snakemake benchmark files, each row also says what a seed cost: training (a teacher's included) plus
evaluation wall time and the larger peak memory, and the table ends with the wall time of them all and the commits
the runs were trained at. Runs of one dataset on different images (manifests) are refused.

Written as Markdown (results/benchmark/table.md, for the README) and HTML (for the report).
"""
from __future__ import annotations

import math
from html import escape
from pathlib import Path

import numpy as np

from pipeline.benchmark_file import read_benchmark_file
from pipeline.errors import InputError

from ..metrics_file import read_metrics_file
from .tables import STYLE, _table, short_commit

PROTOCOLS = ("SC", "CC")
COLUMNS = [(p, k) for p in PROTOCOLS for k in ("mAP", "rank1")]
PROVENANCE = ("seed", "manifest_sha256", "git_commit_train")


def read_runs(paths: list[str | Path]) -> list[tuple[Path, dict]]:
    """metrics.json files, each checked to be trainer.evaluate's with SC and CC protocols; two files of the same
    (dataset, method, seed) are refused, naming both."""
    runs, seen = [], {}
    for path in map(Path, paths):
        report = read_metrics_file(path)
        if report.get("train_dataset") != report["dataset"]:
            raise InputError(f"{path}: a model trained on {report.get('train_dataset', 'an unrecorded dataset')} and "
                             f"evaluated on {report['dataset']}: the benchmark compares models trained and tested on "
                             "one dataset")
        missing = [p for p in PROTOCOLS if p not in report["protocols"]]
        if missing:
            raise InputError(f"{path}: no {', '.join(missing)} protocol ({report['dataset']} has "
                             f"{', '.join(report['protocols'])}): the benchmark compares same-clothes and "
                             "clothes-changing retrieval")
        lacking = [k for k in PROVENANCE if k not in report["provenance"]]
        if lacking:
            raise InputError(f"{path}: its provenance has no {', '.join(lacking)}: written by an older "
                             "trainer.evaluate; evaluate the run again")
        key = (report["dataset"], report["method"], report["provenance"]["seed"])
        if key in seen:
            raise InputError(f"{path} and {seen[key]} both hold {key[0]}/{key[1]} seed {key[2]}")
        seen[key] = path
        runs.append((path, report))
    _same_data(runs)
    return runs


def _same_data(runs: list[tuple[Path, dict]]) -> None:
    """Runs of one dataset name must have read the same images: a run on a regenerated or edited dataset is not
    comparable with the others, and seeds differing by their data would pass for seed noise."""
    first: dict[str, tuple[str, Path]] = {}
    for path, report in runs:
        manifest = report["provenance"]["manifest_sha256"]
        seen = first.setdefault(report["dataset"], (manifest, path))
        if seen[0] != manifest:
            raise InputError(f"{path} and {seen[1]} were run on different images of {report['dataset']} "
                             f"(manifest {manifest[:12]} vs {seen[0][:12]}): run them again on the same data")


def _summary(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one run), in %."""
    v = 100 * np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


TIMED_JOBS = ("train.benchmark.tsv", "evaluate.benchmark.tsv")


def run_costs(runs: list[tuple[Path, str]], timing_paths: list[str | Path],
              teachers: dict[str, str] | None = None) -> dict[Path, tuple[float, float]]:
    """For each (metrics.json, method): (train + evaluate wall seconds, the larger peak RSS in MB), from the
    benchmark files the train and evaluate jobs wrote beside it (`TIMED_JOBS`). A method that trains from a teacher
    (`teachers`: method -> teacher method, DeSKPro's deskpro_teacher) also pays for the teacher's training of the
    same seed: its train.benchmark.tsv in <dataset>/<teacher>/seed<N>/, the layout of results/. A run without its
    files, or a file beside no run and no teacher, is an error naming it."""
    teachers = teachers or {}
    by_dir: dict[Path, dict[str, tuple[float, float]]] = {}
    for path in map(Path, timing_paths):
        if path.name not in TIMED_JOBS:
            raise InputError(f"{path}: a benchmark file of a train or evaluate job is named one of {TIMED_JOBS}")
        by_dir.setdefault(path.parent.resolve(), {})[path.name] = read_benchmark_file(path)
    taught, teacher_dirs = {}, set()  # two methods may learn from one teacher run: each is charged for it
    for path, method in runs:
        if method in teachers:
            run_dir = path.parent.resolve()
            teacher_dir = run_dir.parent.parent / teachers[method] / run_dir.name
            if "train.benchmark.tsv" not in by_dir.get(teacher_dir, {}):
                raise InputError(f"{path}: {method} trains from {teachers[method]}, and no train.benchmark.tsv of "
                                 f"{teacher_dir} is among the benchmark files given")
            taught[path] = by_dir[teacher_dir]["train.benchmark.tsv"]
            teacher_dirs.add(teacher_dir)
    for teacher_dir in teacher_dirs:
        del by_dir[teacher_dir]
    costs = {}
    for path, _ in runs:
        jobs = by_dir.pop(path.parent.resolve(), {})
        missing = [name for name in TIMED_JOBS if name not in jobs]
        if missing:
            raise InputError(f"{path}: no {' or '.join(missing)} beside it among the benchmark files given")
        spent = [*jobs.values(), *([taught[path]] if path in taught else [])]
        costs[path] = (sum(s for s, _ in spent), max(rss for _, rss in spent))
    if by_dir:
        raise InputError(f"benchmark files beside no metrics.json given: {', '.join(map(str, sorted(by_dir)))}")
    return costs


def benchmark_rows(paths: list[str | Path], dataset: str, oracle: str | None, methods: list[str],
                   seeds: list[int], oracle_method: str = "baseline",
                   timings: list[str | Path] | None = None, teachers: dict[str, str] | None = None) -> list[dict]:
    """One row per method in `methods` order (then the oracle): {label, dataset, seeds, SC/CC mAP and rank1 as
    (mean, std), and for methods other than the baseline the CC mAP difference to it with its standard error}.
    With `timings` (the runs' train and evaluate benchmark files), also "minutes" (the fastest and the slowest
    seed's train + evaluate wall time: seeds do the same work, so the fastest is the cost on an otherwise idle
    machine and a slower one shared it), "seconds" (the seeds' sum) and "peak GiB" (the largest of the runs).
    A method trained from a teacher (`teachers`, method -> teacher) is charged the teacher's training too.
    Each row also holds "commits": the commits its runs were trained at.
    Every method must have exactly `seeds`: a missing or extra seed is an error naming it."""
    runs = read_runs(paths)
    costs = (run_costs([(p, r["method"]) for p, r in runs], timings, teachers) if timings is not None else None)
    by_run: dict[tuple[str, str], dict[int, dict]] = {}
    cost_of: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    for path, report in runs:
        key, seed = (report["dataset"], report["method"]), report["provenance"]["seed"]
        by_run.setdefault(key, {})[seed] = report
        if costs is not None:
            cost_of.setdefault(key, {})[seed] = costs[path]
    wanted = [(dataset, m, m) for m in methods]
    if oracle:
        wanted.append((oracle, oracle_method, f"oracle: {oracle_method} on {oracle}"))
    known = {(d, m) for d, m in by_run}
    unexpected = sorted(known - {(d, m) for d, m, _ in wanted})
    if unexpected:
        files: dict[tuple[str, str], list[str]] = {}
        for p, r in runs:
            files.setdefault((r["dataset"], r["method"]), []).append(str(p))
        raise InputError("metrics of runs the benchmark does not hold: "
                         + "; ".join(f"{d}/{m} ({', '.join(files[(d, m)])})" for d, m in unexpected)
                         + f"; it compares {', '.join(methods)} on {dataset}"
                         + (f" and {oracle_method} on the oracle {oracle}" if oracle else ""))
    wrong = [f"{d}/{m}: metrics for seeds {sorted(by_run.get((d, m), {}))}" for d, m, _ in wanted
             if sorted(by_run.get((d, m), {})) != sorted(seeds)]
    if wrong:
        raise InputError(f"{'; '.join(wrong)}; the benchmark needs seeds {sorted(seeds)} of each")
    rows = []
    for d, m, label in wanted:
        got = by_run[(d, m)]
        row = {"label": label, "dataset": d, "method": m, "seeds": sorted(seeds)}
        for p, k in COLUMNS:
            row[f"{p} {k}"] = _summary([got[s]["protocols"][p][k] for s in sorted(seeds)])
        row["_cc_map"] = [100 * got[s]["protocols"]["CC"]["mAP"] for s in sorted(seeds)]
        row["commits"] = sorted({got[s]["provenance"]["git_commit_train"] for s in seeds})
        if costs is not None:
            seconds = [cost_of[(d, m)][s][0] for s in sorted(seeds)]
            row["minutes"] = (min(seconds) / 60, max(seconds) / 60)
            row["seconds"] = float(sum(seconds))
            row["peak GiB"] = max(cost_of[(d, m)][s][1] for s in seeds) / 1024
        rows.append(row)
    base = next((r for r in rows if r["dataset"] == dataset and r["method"] == "baseline"), None)
    for r in rows:
        if base is not None and r is not base:
            diff = float(np.mean(r["_cc_map"]) - np.mean(base["_cc_map"]))
            n = len(seeds)
            se = math.sqrt((np.var(r["_cc_map"], ddof=1) + np.var(base["_cc_map"], ddof=1)) / n) if n > 1 else 0.0
            r["CC mAP vs baseline"] = (diff, se)  # for the oracle: the headroom above the baseline
    for r in rows:
        del r["_cc_map"]
    return rows


def _cell(value: tuple[float, float] | None, signed: bool = False) -> str:
    if value is None:
        return ""
    mean, spread = value
    return f"{mean:+.1f} ± {spread:.1f}" if signed else f"{mean:.1f} ± {spread:.1f}"


HEADER = ["method", "seeds", "SC mAP", "SC R1", "CC mAP", "CC R1", "CC mAP − baseline (± s.e.)"]
COST_HEADER = ["min / seed (fastest–slowest)", "peak GiB"]


def _timed(rows: list[dict]) -> bool:
    return all("minutes" in r for r in rows)


def _header(rows: list[dict]) -> list[str]:
    return HEADER + COST_HEADER if _timed(rows) else HEADER


def _cells(row: dict) -> list[str]:
    cells = [row["label"], ",".join(map(str, row["seeds"])), *(_cell(row[f"{p} {k}"]) for p, k in COLUMNS),
             _cell(row.get("CC mAP vs baseline"), signed=True)]
    if "minutes" in row:
        cells += ["{:.1f}–{:.1f}".format(*row["minutes"]), f"{row['peak GiB']:.1f}"]
    return cells


def _caption(rows: list[dict], dataset: str) -> str:
    caption = (f"Benchmark on {dataset}: mean ± standard deviation over seeds, % "
               "(CC mAP − baseline: difference of means ± its standard error)")
    if _timed(rows):
        caption += ("; min / seed: training + evaluation wall time of the fastest and the slowest seed (a method "
                    "trained from a teacher includes the teacher's training), peak GiB: the largest resident memory "
                    "of a run, both from Snakemake's benchmark files")
    return caption


def _commits(rows: list[dict]) -> str:
    """Which code trained the runs: one commit for all, or each commit with the rows trained there."""
    labels: dict[str, list[str]] = {}
    for r in rows:
        for commit in r["commits"]:
            labels.setdefault(short_commit(commit), []).append(r["label"])
    if len(labels) == 1:
        return f"Every run trained at commit {next(iter(labels))}."
    return "Runs trained at commits " + "; ".join(f"{c} ({', '.join(ls)})" for c, ls in sorted(labels.items())) + "."


def _total(rows: list[dict]) -> str:
    """The wall time of every run's training and evaluation, one after another."""
    hours, minutes = divmod(round(sum(r["seconds"] for r in rows) / 60), 60)
    runs = sum(len(r["seeds"]) for r in rows)
    return f"Training and evaluation of all {runs} runs, one after another: {hours} h {minutes:02d} min wall time."


def table_markdown(rows: list[dict], dataset: str) -> str:
    header = _header(rows)
    lines = [_caption(rows, dataset), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    if _timed(rows):
        lines += ["", _total(rows)]
    lines += ["", _commits(rows)]
    return "\n".join(lines) + "\n"


def table_html(rows: list[dict], dataset: str) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8>{STYLE}</head><body>"
            + _table(_caption(rows, dataset), _header(rows), [_cells(r) for r in rows], left=2)
            + (f"<p>{escape(_total(rows))}</p>" if _timed(rows) else "")
            + ("<p>" + escape("The oracle is trained and tested on the clothes-free twin of the same people.") + "</p>"
               if any(r["dataset"] != dataset for r in rows) else "")
            + f"<p>{escape(_commits(rows))}</p>"
            + "</body></html>\n")
