"""`t2 export --plot`: how much of an SVF expert's weight change a rank-k LoRA keeps, at every k."""

from __future__ import annotations

from pathlib import Path

from t2cli.experts.fidelity import FidelityCurve
from t2cli.plots.style import COLORS, drawing


def plot_fidelity(curve: FidelityCurve, path: Path, *, chosen: int | None = None, title: str = "") -> FidelityCurve:
    """Energy kept (left) and largest relative weight error (right) against the uniform rank; the
    exported rank, if uniform, is marked."""
    with drawing(path, 9, 3.4) as fig:
        energy_axes, error_axes = fig.subplots(1, 2)
        energy_axes.plot(curve.ranks, [100 * e for e in curve.energy], color=COLORS[0])
        energy_axes.set_ylabel("‖ΔW_k‖² / ‖ΔW‖² (%)")
        energy_axes.set_title(f"{title}: energy kept" if title else "energy kept")
        error_axes.plot(curve.ranks, curve.max_error, color=COLORS[1])
        error_axes.set_yscale("symlog", linthresh=1e-6)
        error_axes.set_ylabel("max ‖ΔW − ΔW_k‖ / ‖W′‖")
        error_axes.set_title("largest relative weight error")
        for axes in (energy_axes, error_axes):
            axes.set_xscale("log", base=2)
            axes.set_xlabel("LoRA rank k")
            if chosen is not None:
                axes.axvline(chosen, color="grey", ls="--", label=f"exported r={chosen}")
                axes.legend(loc="best")
    return curve
