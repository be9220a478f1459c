"""Training curves from history.jsonl (trainer.engine.fit: one record per epoch): losses, accuracies and other
per-epoch means, every optimiser's learning rate, throughput, and the periodic evaluation's mAP / rank-1."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.atomic import write_bytes
from pipeline.errors import InputError

from .plotting import figure_png, pyplot

BOOKKEEPING = {"epoch", "seconds", "steps", "images_per_second", "eval"}


def read_history(path: str | Path) -> list[dict]:
    records = []
    for n, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}:{n}: not a JSON record ({e}): a line cut short by a killed run, "
                             "or edited?") from None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise InputError(f"{path}:{n}: not an epoch record of trainer.engine (no integer 'epoch')")
        records.append(record)
    if not records:
        raise InputError(f"{path}: no epochs recorded")
    epochs = [r["epoch"] for r in records]
    if epochs != sorted(set(epochs)):
        raise InputError(f"{path}: epochs {epochs} are not increasing (a history of two runs mixed?)")
    return records


def _panels(records: list[dict]) -> list[tuple[str, dict[str, tuple[list, list]], str]]:
    """(title, {curve: (epochs, values)}, y scale) for each panel that has a curve."""
    groups: dict[str, dict[str, tuple[list, list]]] = {"losses": {}, "accuracies and per-epoch fractions": {},
                                                       "learning rate": {}, "images / s": {},
                                                       "periodic evaluation (%)": {}}
    for r in records:
        for k, v in r.items():
            if k in BOOKKEEPING or not isinstance(v, int | float):
                continue
            group = "losses" if k.startswith("loss") else "learning rate" if k.startswith("lr_") else \
                "accuracies and per-epoch fractions"
            xs, ys = groups[group].setdefault(k, ([], []))
            xs.append(r["epoch"])
            ys.append(v)
        if "images_per_second" in r:
            xs, ys = groups["images / s"].setdefault("images/s", ([], []))
            xs.append(r["epoch"])
            ys.append(r["images_per_second"])
        for protocol, m in r.get("eval", {}).items():
            for key, label in (("mAP", "mAP"), ("rank1", "R1")):
                xs, ys = groups["periodic evaluation (%)"].setdefault(f"{protocol} {label}", ([], []))
                xs.append(r["epoch"])
                ys.append(100 * m[key])
    return [(t, c, "log" if t == "learning rate" else "linear") for t, c in groups.items() if c]


def plot_curves(history: str | Path, out: str | Path, title: str = "") -> Path:
    records = read_history(history)
    panels = _panels(records)
    plt = pyplot()
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.3 * rows), squeeze=False, layout="constrained")
    for ax, (name, curves, scale) in zip(axes.flat, panels, strict=False):
        colours: dict[str, str] = {}
        for label, (xs, ys) in curves.items():
            marker = "o" if len(xs) < 0.5 * len(records) else None  # sparse (periodic) points stay visible
            periodic = label.endswith((" mAP", " R1"))  # one colour per protocol: mAP solid, rank-1 dashed
            key = label.rsplit(" ", 1)[0] if periodic else label
            colour = colours.setdefault(key, f"C{len(colours) % 10}")
            ax.plot(xs, ys, label=label, marker=marker, markersize=3, color=colour,
                    linestyle="--" if periodic and label.endswith(" R1") else "-")
        ax.set(title=name, xlabel="epoch", yscale=scale)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    seconds = sum(r.get("seconds", 0) for r in records)
    fig.suptitle(f"{title}{': ' if title else ''}{len(records)} epochs, {seconds / 60:.1f} min")
    write_bytes(out, figure_png(fig))
    return Path(out)
