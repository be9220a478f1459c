"""CMC curves from metrics.json (trainer.evaluation.summarise keeps each protocol's curve to rank 50): one
panel per protocol, a curve per method, each further stream of a method dashed, and the chance line: the CMC a
random ranking scores in expectation (metrics.json's chance_cmc, trainer.evaluation.chance_cmc)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import write_bytes
from pipeline.errors import InputError

from ..report import metric_rows
from .plotting import figure_png, pyplot
from .tables import read_metrics


def plot_cmc(paths: list[str | Path], out: str | Path) -> Path:
    write_bytes(out, figure_png(cmc_figure(paths)))
    return Path(out)


def _chance(ax, curves: dict[tuple, list[str]], unrecorded: list[str]) -> None:
    """The chance line of a panel. Not k / gallery size: a query's chance of a true match within the first k is
    1 - C(kept - good, k) / C(kept, k), with `good` its true matches among `kept` junk-free gallery items (about
    k·good / kept), averaged over the valid queries, as evaluation computes it. Runs evaluated before metrics.json
    kept it have none, and the legend says so."""
    for curve, methods in curves.items():
        chance = 100 * np.asarray(curve, float)
        label = "chance (random ranking)" + (f": {', '.join(methods)}" if len(curves) > 1 else "")
        ax.plot(np.arange(1, len(chance) + 1), chance, ":", color="0.4", label=label)
    if unrecorded:
        ax.plot([], [], " ", label=f"chance: not recorded for {', '.join(unrecorded)} (evaluated before it was kept)")


def cmc_figure(paths: list[str | Path]):
    reports = read_metrics(paths)
    protocols: list[str] = []
    for r in reports:
        protocols += [p for p in r["protocols"] if p not in protocols]
    plt = pyplot()
    cols = min(2, len(protocols))
    rows = -(-len(protocols) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, protocols, strict=False):
        chance: dict[tuple, list[str]] = {}  # distinct chance curves (one where the runs share the gallery)
        unrecorded: list[str] = []
        for path, r in zip(paths, reports, strict=True):
            for method, protocol, m in metric_rows(r):
                if protocol != name:
                    continue
                if "cmc" not in m:
                    raise InputError(f"{path}: protocol {name} has no 'cmc' curve (written before ccreid kept it; "
                                     "rerun its evaluation)")
                cmc = 100 * np.asarray(m["cmc"], float)
                ax.plot(np.arange(1, len(cmc) + 1), cmc, "--" if "[" in method else "-",
                        label=f"{method} (R1 {cmc[0]:.1f}, mAP {100 * m['mAP']:.1f})")
                if "chance_cmc" in m:
                    chance.setdefault(tuple(m["chance_cmc"]), []).append(method)
                else:
                    unrecorded.append(method)
        _chance(ax, chance, unrecorded)
        ax.set(title=name, xlabel="rank", ylabel="matching rate (%)", ylim=(0, 100), xscale="log")
        ax.set_xticks([1, 2, 5, 10, 20, 50], ["1", "2", "5", "10", "20", "50"])  # ranks, not powers of ten
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")  # the chance line runs along the bottom
    for ax in list(axes.flat)[len(protocols):]:
        ax.axis("off")
    fig.suptitle(f"{', '.join(sorted({r['dataset'] for r in reports}))}: CMC")
    return fig
