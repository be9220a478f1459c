"""Training scalars as TensorBoard event files, when the optional `tensorboard` extra is installed
(`pip install -e '.[tensorboard]'`; `tensorboard --logdir results/<dataset>/<method>/tensorboard` to look).

The same numbers as history.jsonl, one point per epoch: `train/<key>` for every number of the epoch's record
(losses, accuracies, lr_<optimiser>, images_per_second, seconds) and `eval/<protocol>/<metric>` for the periodic
evaluation. Each run (trainer.run_identity) writes its own folder, so a run over changed data does not draw over
the old curves.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class ScalarLog:
    """Opens its event file with the first record (a run that fails before its first checkpoint leaves none)."""

    def __init__(self, folder: str | Path):
        self.folder, self.writer = Path(folder), None

    def epoch(self, record: dict) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder))
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"train/{key}", value, step)
        for protocol, metrics in record.get("eval", {}).items():
            for metric, value in metrics.items():
                self.writer.add_scalar(f"eval/{protocol}/{metric}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
