"""Cross-model transfer of an expert: move z from a source model's matrices to a target model's.

Matrices are matched by role (q k v o gate up down), then placed by relative depth and relative
spectral position:

- layer: target layer j of Lt sits at source position p = j·(Ls−1)/(Lt−1); z is interpolated
  linearly between source layers ⌊p⌋ and ⌈p⌉ (a single source layer when p is a whole number).
  Interpolation, not nearest, because it neither duplicates nor skips source layers when depths
  differ, keeps a depth-smooth expert smooth, and reduces to a plain copy when Ls = Lt.
- spectrum: singular value i of a rank-r matrix sits at t = i/(r−1) (largest first); z is
  resampled onto the target's rank by linear interpolation in t.

Positions are exact fractions and each interpolation is written a + f·(b − a), so a constant z
comes back exactly, whole-number positions copy exactly, and same-shape, same-depth transfer is a
bit-for-bit copy. `strength` β scales the deviation from the identity: z' = 1 + β(z − 1).

Roles the expert adapts must all be in the target selection (dropping one would silently change
what the expert does). Roles selected in the target but absent from the expert keep z = 1, which
is exactly what the source expert did to them, and the mapping lists them as `identity`.

The `aligned` mapping (same depth and shapes only) places z by the singular directions themselves
instead of their sorted positions: each target direction takes the deviations of the source
directions it overlaps (alignment.carry_aligned). An updated checkpoint keeps most directions but
reorders those whose singular values cross, and rotates near-equal ones into each other; position
then hands a direction another's z. Every transfer is checked first (alignment.py): the report is
stored in the manifest and an `unrelated` target is refused unless forced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from t2cli.errors import BadInputError
from t2cli.experts.compose import Placed, Targets, depth, keyed
from t2cli.targets import ALL_ROLES

MAPPINGS = ("position", "aligned")
_SPECTRUM = {
    "position": "normalised singular-value index, linear",
    "aligned": "overlap-weighted: z'_j = 1 + Σ_i w_ij (z_i − 1) / Σ_i w_ij, w_ij = |u_iᵀu'_j|·|v_iᵀv'_j|",
}


@dataclass(frozen=True)
class MatrixMapping:
    """How one target matrix got its z: `copy`, `resample` or `identity` (z = 1), from which sources."""

    target: str
    method: str
    sources: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "method": self.method, "sources": dict(self.sources)}


@dataclass(frozen=True)
class Transfer:
    """The transferred z, β, and the record of how every matrix was made (stored in the manifest)."""

    z: dict[str, torch.Tensor]
    matrices: tuple[MatrixMapping, ...]
    strength: float
    source_layers: int
    target_layers: int
    ranks: dict[str, tuple[int, int]]
    identity_roles: tuple[str, ...]
    kind: str = "position"

    def mapping(self) -> dict[str, Any]:
        """Plain, JSON- and YAML-safe data."""
        return {
            "kind": self.kind,
            "layers": "relative depth, linear between the two nearest source layers",
            "spectrum": _SPECTRUM[self.kind],
            "source_layers": self.source_layers,
            "target_layers": self.target_layers,
            "ranks": {role: {"source": source, "target": target} for role, (source, target) in self.ranks.items()},
            "identity_roles": list(self.identity_roles),
            "matrices": [m.to_dict() for m in self.matrices],
        }


def _fraction(index: int, source_size: int, target_size: int) -> tuple[int, int, int]:
    """Target index -> source position as (whole part, remainder, denominator), exactly."""
    if source_size == 1 or target_size == 1:
        return 0, 0, 1
    whole, remainder = divmod(index * (source_size - 1), target_size - 1)
    return whole, remainder, target_size - 1


def layer_sources(layer: int, source_layers: int, target_layers: int) -> tuple[tuple[int, float], ...]:
    """Source layers and weights for a target layer: one layer (weight 1) or two neighbours."""
    whole, remainder, denominator = _fraction(layer, source_layers, target_layers)
    if remainder == 0:
        return ((whole, 1.0),)
    weight = remainder / denominator
    return ((whole, 1.0 - weight), (whole + 1, weight))


def resample(z: torch.Tensor, rank: int) -> torch.Tensor:
    """z resampled onto `rank` points of the normalised index t ∈ [0, 1], in float64."""
    source = z.detach().to(torch.float64)
    if source.shape[0] == rank:
        return source.clone()
    positions = [_fraction(i, source.shape[0], rank) for i in range(rank)]
    low = torch.tensor([whole for whole, _, _ in positions])
    high = torch.clamp(low + 1, max=source.shape[0] - 1)
    fraction = torch.tensor([r / d for _, r, d in positions], dtype=torch.float64)
    return source[low] + fraction * (source[high] - source[low])


def _by_role_layer(targets: Mapping[str, Placed]) -> dict[tuple[str, int], str]:
    found: dict[tuple[str, int], str] = {}
    for name, target in targets.items():
        key = (target.role, target.layer)
        if key in found:
            raise BadInputError(
                f"the expert has two {target.role} matrices in layer {target.layer} ({found[key]}, {name}); "
                "check its manifest"
            )
        found[key] = name
    return found


def check_roles(source_targets: Targets, target_targets: Targets) -> tuple[set[str], set[str]]:
    """(source roles, target roles); refuse a target selection that lacks a role the expert adapts."""
    source_roles = {t.role for t in keyed(source_targets).values()}
    target_roles = {t.role for t in keyed(target_targets).values()}
    missing = [role for role in ALL_ROLES if role in source_roles and role not in target_roles]
    if missing:
        raise BadInputError(
            f"the expert adapts role(s) {','.join(missing)} but the target selection has none; "
            "include them in --targets (or use --targets all)"
        )
    return source_roles, target_roles


def check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise BadInputError(f"strength must be a finite number, got {strength!r}; try --strength 1.0")
    return strength


def transfer_vectors(
    z: Mapping[str, torch.Tensor],
    source_targets: Targets,
    target_targets: Targets,
    strength: float = 1.0,
    carried: Mapping[str, torch.Tensor] | None = None,
) -> Transfer:
    """Map an expert's z (over source_targets) onto target_targets; see the module docstring.

    `carried` (target name -> z, from `align_experts`) selects the aligned mapping: it replaces the
    positional resampling, and needs the source's depth and ranks.
    """
    check_strength(strength)
    source, target = keyed(source_targets), keyed(target_targets)
    for name, placed in source.items():
        if name not in z or tuple(z[name].shape) != (placed.rank,):
            raise BadInputError(f"the expert has no z of length {placed.rank} for {name}; check its manifest")
    source_roles, target_roles = check_roles(source, target)
    source_layers, target_layers = depth(source), depth(target)
    by_place = _by_role_layer(source)
    vectors: dict[str, torch.Tensor] = {}
    matrices: list[MatrixMapping] = []
    ranks: dict[str, tuple[int, int]] = {}
    for name, placed in target.items():
        if placed.role not in source_roles:
            vectors[name] = torch.ones(placed.rank, dtype=torch.float32)
            matrices.append(MatrixMapping(name, "identity", ()))
            continue
        sources: list[tuple[str, float]] = []
        for layer, weight in layer_sources(placed.layer, source_layers, target_layers):
            if (placed.role, layer) not in by_place:
                raise BadInputError(f"the expert has no {placed.role} matrix in layer {layer}; check its manifest")
            sources.append((by_place[placed.role, layer], weight))
        source_rank = source[sources[0][0]].rank
        ranks[placed.role] = (source_rank, placed.rank)
        if carried is not None:
            if len(sources) == 2 or source_rank != placed.rank:
                raise BadInputError(
                    f"the aligned mapping needs the source's depth and shapes ({name} has none to match); "
                    "use --mapping position"
                )
            vector = carried[name]
        else:
            vector = resample(z[sources[0][0]], placed.rank)
        if len(sources) == 2:
            upper, weight = sources[1]
            vector = vector + weight * (resample(z[upper], placed.rank) - vector)
        if strength != 1.0:  # skipped at 1: 1 + (z − 1) is not always z in floating point
            vector = 1.0 + strength * (vector - 1.0)
        vectors[name] = vector.to(torch.float32)
        method = "copy" if len(sources) == 1 and source_rank == placed.rank else "resample"
        method = "aligned" if carried is not None else method
        matrices.append(MatrixMapping(name, method, tuple(sources)))
    return Transfer(
        z=vectors,
        matrices=tuple(matrices),
        strength=float(strength),
        source_layers=source_layers,
        target_layers=target_layers,
        ranks={role: ranks[role] for role in ALL_ROLES if role in ranks},
        identity_roles=tuple(role for role in ALL_ROLES if role in target_roles and role not in source_roles),
        kind="position" if carried is None else "aligned",
    )


def check_mapping(mapping: str) -> str:
    if mapping not in MAPPINGS:
        raise BadInputError(f"unknown mapping {mapping!r}; use one of {', '.join(MAPPINGS)}")
    return mapping


def matched_pairs(source_targets: Targets, target_targets: Targets) -> dict[str, str]:
    """Target name -> the source matrix of its role at the nearest relative depth (what the check compares)."""
    source = _by_role_layer(keyed(source_targets))
    target = keyed(target_targets)
    source_layers = max(layer for _, layer in source) + 1 if source else 1
    pairs = {}
    for name, placed in target.items():
        nearest = max(layer_sources(placed.layer, source_layers, depth(target)), key=lambda pair: pair[1])[0]
        if (placed.role, nearest) in source:
            pairs[name] = source[placed.role, nearest]
    return pairs
