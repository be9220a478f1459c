"""CMC curves from metrics.json (trainer.evaluation.summarise keeps each protocol's curve to rank 50): one
panel per protocol, a curve per method, each further stream of a method dashed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.atomic import write_bytes
from pipeline.errors import InputError

from ..report import metric_rows
from .plotting import figure_png, pyplot
from .tables import read_metrics


def plot_cmc(paths: list[str | Path], out: str | Path) -> Path:
    reports = read_metrics(paths)
    protocols: list[str] = []
    for r in reports:
        protocols += [p for p in r["protocols"] if p not in protocols]
    plt = pyplot()
    cols = min(2, len(protocols))
    rows = -(-len(protocols) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, protocols, strict=False):
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
        ax.set(title=name, xlabel="rank", ylabel="matching rate (%)", ylim=(0, 100), xscale="log")
        ax.set_xticks([1, 2, 5, 10, 20, 50], ["1", "2", "5", "10", "20", "50"])  # ranks, not powers of ten
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in list(axes.flat)[len(protocols):]:
        ax.axis("off")
    fig.suptitle(f"{', '.join(sorted({r['dataset'] for r in reports}))}: CMC")
    write_bytes(out, figure_png(fig))
    return Path(out)
