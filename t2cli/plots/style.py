"""What every figure shares: the matplotlib check, one fixed style, and deterministic PNG output.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so no
global backend or figure registry is touched; the style is applied per figure through an rc context.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2cli.errors import BadInputError
from t2cli.fsutil import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 't2cli[plots]'"
DPI = 100
# Fixed fonts and sizes: the same data gives the same PNG bytes on every run.
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "image.cmap": "viridis",
}
# One colour per series, in order: the Okabe-Ito palette, which colour-blind readers can tell apart.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def check_plot_target(path: Path) -> Path:
    """Refuse `--plot FILE` up front, before any model loads: matplotlib missing, not a .png, no such folder."""
    if not plots_available():
        raise BadInputError(f"drawing plots needs matplotlib, which is not installed; install it with {INSTALL_HINT}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise BadInputError(f"plot file {path} must end in .png; give a name like figure.png")
    if not path.parent.is_dir():
        raise BadInputError(f"folder {path.parent} for the plot does not exist; create it first")
    return path


@contextmanager
def drawing(path: Path, width: float, height: float) -> Iterator[Figure]:
    """A figure of width × height inches in the fixed style, written to `path` as PNG when the block ends."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        buffer = io.BytesIO()
        # No metadata: neither the matplotlib version nor a date ends up in the bytes.
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        atomic_write(Path(path), buffer.getvalue())
