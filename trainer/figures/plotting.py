"""matplotlib without a display, and a figure's PNG bytes (written atomically by the caller)."""
from __future__ import annotations

import io


def pyplot():
    """pyplot on the Agg backend: figure rules run on cluster nodes and CI machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()
