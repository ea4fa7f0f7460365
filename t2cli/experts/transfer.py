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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from t2cli.errors import BadInputError
from t2cli.experts.compose import Placed, Targets, depth, keyed
from t2cli.experts.files import Expert
from t2cli.experts.manifest import new_manifest
from t2cli.models.loading import LoadedModel
from t2cli.targets import ALL_ROLES


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

    def mapping(self) -> dict[str, Any]:
        """Plain, JSON- and YAML-safe data."""
        return {
            "layers": "relative depth, linear between the two nearest source layers",
            "spectrum": "normalised singular-value index, linear",
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


def check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise BadInputError(f"strength must be a finite number, got {strength!r}; try --strength 1.0")
    return strength


def transfer_vectors(
    z: Mapping[str, torch.Tensor], source_targets: Targets, target_targets: Targets, strength: float = 1.0
) -> Transfer:
    """Map an expert's z (over source_targets) onto target_targets; see the module docstring."""
    check_strength(strength)
    source, target = keyed(source_targets), keyed(target_targets)
    for name, placed in source.items():
        if name not in z or tuple(z[name].shape) != (placed.rank,):
            raise BadInputError(f"the expert has no z of length {placed.rank} for {name}; check its manifest")
    source_roles = {t.role for t in source.values()}
    target_roles = {t.role for t in target.values()}
    missing = [role for role in ALL_ROLES if role in source_roles and role not in target_roles]
    if missing:
        raise BadInputError(
            f"the expert adapts role(s) {','.join(missing)} but the target selection has none; "
            "include them in --targets (or use --targets all)"
        )
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
        vector = resample(z[sources[0][0]], placed.rank)
        if len(sources) == 2:
            upper, weight = sources[1]
            vector = vector + weight * (resample(z[upper], placed.rank) - vector)
        if strength != 1.0:  # skipped at 1: 1 + (z − 1) is not always z in floating point
            vector = 1.0 + strength * (vector - 1.0)
        vectors[name] = vector.to(torch.float32)
        method = "copy" if len(sources) == 1 and source_rank == placed.rank else "resample"
        matrices.append(MatrixMapping(name, method, tuple(sources)))
    return Transfer(
        z=vectors,
        matrices=tuple(matrices),
        strength=float(strength),
        source_layers=source_layers,
        target_layers=target_layers,
        ranks={role: ranks[role] for role in ALL_ROLES if role in ranks},
        identity_roles=tuple(role for role in ALL_ROLES if role in target_roles and role not in source_roles),
    )


def transfer_expert(
    expert: Expert,
    target: LoadedModel,
    *,
    selection: str | None = None,
    strength: float = 1.0,
    name: str | None = None,
) -> Expert:
    """An unpublished expert of the target model made from `expert` (by default, same roles and name).

    The provenance records the source version, model and fingerprint, the per-matrix mapping and β.
    """
    source = expert.manifest
    if selection is None:
        roles = {info.role for info in source.targets.values()}
        targets = [t for t in target.targets if t.role in roles]
    else:
        targets = target.select(selection)
    result = transfer_vectors(expert.z, source.targets, targets, strength)
    provenance = {
        "kind": "transferred",
        "source": {"expert": source.ref, "model": source.base_model, "fingerprint": source.base_fingerprint},
        "mapping": result.mapping(),
        "strength": result.strength,
    }
    manifest = new_manifest(
        name=name or source.name,
        base_model=target.model_id,
        base_fingerprint=target.fingerprint,
        targets=targets,
        provenance=provenance,
        svf_rule=source.svf_rule,
        task=source.task,
        description=source.description,
    )
    return Expert(manifest, result.z)
