"""An expert's z as pictures: a layers × roles heat map of mean |z − 1|, the z spectra of the matrices it
changes most, and for a composed or searched expert the α of each source expert over depth.

Mean |z − 1| is the colour because z = 1 is the base model: 0 means "this matrix is untouched", and it
stays readable for the negative or zero singular-value scales that log z could not show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from t2cli.plots.style import COLORS, drawing
from t2cli.targets import ALL_ROLES

if TYPE_CHECKING:
    from t2cli.experts.files import Expert
    from t2cli.experts.manifest_fields import TargetInfo

MEASURE = "mean |z − 1|"
SPECTRUM_CURVES = 4
# Per-value z is noise-like at ranks of hundreds; run means show the trend over the spectrum.
SPECTRUM_BINS = 24


@dataclass(frozen=True)
class ZHeatmap:
    """values[i][j]: MEASURE of the matrix of role roles[i] in layer layers[j] (nan where not adapted)."""

    layers: tuple[int, ...]
    roles: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    measure: str = MEASURE


@dataclass(frozen=True)
class Spectrum:
    """One matrix's z along its singular values (largest first), as the means of SPECTRUM_BINS equal runs of
    indices; position: each run's centre index / (rank − 1), so matrices of different rank line up."""

    name: str
    layer: int
    role: str
    position: tuple[float, ...]
    z: tuple[float, ...]


@dataclass(frozen=True)
class AlphaCurve:
    """α of one source expert at every layer, shared by the listed roles."""

    expert: str
    roles: tuple[str, ...]
    alpha: tuple[float, ...]


@dataclass(frozen=True)
class ExpertPlot:
    title: str
    heatmap: ZHeatmap
    spectra: tuple[Spectrum, ...]
    layers: tuple[int, ...]
    mix: tuple[AlphaCurve, ...]  # empty unless the expert is a composed or searched mix

    @property
    def constant_mix(self) -> bool:
        """Every α is one number over depth (a scalar recipe): drawn as bars, not curves."""
        return all(len(set(curve.alpha)) == 1 for curve in self.mix)


def _deviation(vector: torch.Tensor) -> float:
    return float((vector.double() - 1).abs().mean())


def z_heatmap(targets: Mapping[str, TargetInfo], z: Mapping[str, torch.Tensor]) -> ZHeatmap:
    layers = tuple(sorted({info.layer for info in targets.values()}))
    roles = tuple(role for role in ALL_ROLES if any(info.role == role for info in targets.values()))
    grid = {(info.role, info.layer): _deviation(z[name]) for name, info in targets.items()}
    values = tuple(tuple(grid.get((role, layer), math.nan) for layer in layers) for role in roles)
    return ZHeatmap(layers, roles, values)


def top_spectra(
    targets: Mapping[str, TargetInfo], z: Mapping[str, torch.Tensor], count: int = SPECTRUM_CURVES
) -> tuple[Spectrum, ...]:
    """The `count` matrices z moves furthest from 1 (ties: lower layer, then attention before MLP)."""
    order = {role: i for i, role in enumerate(ALL_ROLES)}
    ranked = sorted(targets, key=lambda n: (-_deviation(z[n]), targets[n].layer, order[targets[n].role], n))
    spectra = []
    for name in ranked[:count]:
        vector = z[name].double()
        last = max(len(vector) - 1, 1)
        runs = torch.arange(len(vector), dtype=torch.float64).tensor_split(min(SPECTRUM_BINS, len(vector)))
        position = tuple(float(run.mean()) / last for run in runs)
        values = tuple(float(run.mean()) for run in vector.tensor_split(len(runs)))
        spectra.append(Spectrum(name, targets[name].layer, targets[name].role, position, values))
    return tuple(spectra)


def mix_curves(targets: Mapping[str, TargetInfo], provenance: Mapping[str, Any]) -> tuple[AlphaCurve, ...]:
    """α per source expert, role and layer, as composition applies it (gradients and normalisation included)."""
    from t2cli.experts.compose import resolve_alphas
    from t2cli.experts.recipes import recipe_from_dict

    if provenance.get("kind") not in ("composed", "searched") or not provenance.get("recipe"):
        return ()
    recipe = recipe_from_dict(provenance["recipe"], "the manifest's recipe")
    weights = resolve_alphas([e.alpha for e in recipe.experts], targets, normalize=recipe.normalize)
    layers = sorted({info.layer for info in targets.values()})
    curves = []
    for k, entry in enumerate(recipe.experts):
        by_role: dict[str, dict[int, float]] = {}
        for name, info in targets.items():
            by_role.setdefault(info.role, {})[info.layer] = weights[name][k]
        # Roles with the same α at every layer share one curve, so a plain recipe draws one per expert.
        shared: dict[tuple[float, ...], list[str]] = {}
        for role in (r for r in ALL_ROLES if r in by_role):
            shared.setdefault(tuple(by_role[role].get(layer, math.nan) for layer in layers), []).append(role)
        curves += [AlphaCurve(entry.ref, tuple(roles), alpha) for alpha, roles in shared.items()]
    return tuple(curves)


def expert_plot_data(expert: Expert, title: str | None = None) -> ExpertPlot:
    manifest = expert.manifest
    heatmap = z_heatmap(manifest.targets, expert.z)
    return ExpertPlot(
        title=title or manifest.ref,
        heatmap=heatmap,
        spectra=top_spectra(manifest.targets, expert.z),
        layers=heatmap.layers,
        mix=mix_curves(manifest.targets, manifest.provenance),
    )


def _curve_label(curve: AlphaCurve, mix: tuple[AlphaCurve, ...]) -> str:
    alone = sum(other.expert == curve.expert for other in mix) == 1
    return curve.expert if alone else f"{curve.expert} ({','.join(curve.roles)})"


def plot_expert(expert: Expert, path: Path, *, title: str | None = None) -> ExpertPlot:
    """Heat map, spectra and (for mixes) α of one expert in one PNG; returns what was drawn."""
    import numpy as np

    data = expert_plot_data(expert, title)
    heat = data.heatmap
    with drawing(path, 9, 7 if data.mix else 6.5) as fig:
        grid = fig.add_gridspec(2, 2 if data.mix else 1, height_ratios=(1, 1.2))
        top = fig.add_subplot(grid[0, :])
        image = top.imshow(np.ma.masked_invalid(np.array(heat.values)), aspect="auto", interpolation="nearest")
        every = math.ceil(len(heat.layers) / 32)  # at most 32 layer labels, so deep models stay legible
        top.set_xticks(range(0, len(heat.layers), every), [str(layer) for layer in heat.layers[::every]])
        top.set_yticks(range(len(heat.roles)), heat.roles)
        top.set_xlabel("layer")
        top.set_ylabel("role")
        top.grid(False)
        top.set_title(f"{data.title}: {heat.measure} per matrix (0 = the base model)")
        fig.colorbar(image, ax=top, label=heat.measure, pad=0.01)
        spectrum = fig.add_subplot(grid[1, 0])
        for color, curve in zip(COLORS, data.spectra, strict=False):
            spectrum.plot(curve.position, curve.z, lw=1.2, color=color, label=f"layer {curve.layer} {curve.role}")
        spectrum.axhline(1.0, color="grey", lw=0.8, ls="--")
        spectrum.set_xlabel(f"singular value index / (rank − 1), largest first (means of {SPECTRUM_BINS} runs)")
        spectrum.set_ylabel("z")
        spectrum.set_title(f"z spectra of the {len(data.spectra)} most changed matrices")
        spectrum.legend(loc="best")
        if data.mix:
            _draw_mix(fig.add_subplot(grid[1, 1]), data)
    return data


def _draw_mix(axes: Any, data: ExpertPlot) -> None:
    if data.constant_mix:
        labels = [_curve_label(curve, data.mix) for curve in data.mix]
        axes.bar(range(len(data.mix)), [curve.alpha[0] for curve in data.mix], color=COLORS[: len(data.mix)])
        axes.set_xticks(range(len(data.mix)), labels, rotation=20, ha="right")
        axes.set_title("α per source expert")
    else:
        for i, curve in enumerate(data.mix):
            color = COLORS[i % len(COLORS)]
            axes.plot(data.layers, curve.alpha, marker=".", color=color, label=_curve_label(curve, data.mix))
        axes.set_xlabel("layer")
        axes.set_title("α per source expert and layer")
        axes.legend(loc="best")
    axes.set_ylabel("α")
