"""Pre-flight check of a transfer: do the target's singular directions mean what the source's did?

An SVF expert scales singular directions: z_i multiplies s_i u_i v_iᵀ. It can only mean the same on
another checkpoint as far as that checkpoint's singular directions are the source's. For each pair
of matched matrices (same role, layer by relative depth) two scores are measured:

- cosine: the mean cosine of the principal angles between the top-K left singular subspaces
  (span U_K against span U'_K), averaged with the same for the right ones (V_K): 1 when the leading
  directions coincide in any order and sign, about √(K/d) for unrelated d-dimensional bases. It
  depends on the two models only.
- energy: the share of the expert's change ΔW = U diag(s(z − 1)) Vᵀ that the target's singular basis
  can hold, ‖diag(U'ᵀ ΔW V')‖² / ‖ΔW‖²: the part some z on the target can express (the rest lies off
  the target's diagonal and no z reaches it). 1 when the bases coincide, about 1/max(m, n) for
  unrelated ones. It depends on the models and the expert.

Per role the cosine is averaged over layers and the energy pooled (Σ held / Σ ‖ΔW‖²). The verdict
reads the pooled energy, because it bounds what any transfer can keep: `aligned` from
ALIGNED_ENERGY (most of the change survives), `unrelated` below UNRELATED_ENERGY (ten times less than
half, and far above the ~0.002 of unrelated bases at SmolLM2's widths, so a refusal is not a near
miss), `partial` between. Matrices of different shapes share no coordinate system (the widths name
different features), so such a pair is `unrelated` by construction; its cosine is still measured on
the shared leading coordinates, as a baseline of what unrelated bases score, and its energy is
undefined. A target with the source's fingerprint has the source's weights: every score is 1
without computing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from t2cli.errors import BadInputError, IntegrityError
from t2cli.models.loading import LoadedModel
from t2cli.svd import decompose
from t2cli.svf import Factors

TOP_K = 16
ALIGNED_ENERGY = 0.5
UNRELATED_ENERGY = 0.05


@dataclass(frozen=True)
class Overlap:
    """How one target matrix's singular directions meet its source matrix's.

    `signed[i, j]` = (u_iᵀ u'_j)(v_iᵀ v'_j): None where the shapes differ or the weights are identical.
    """

    role: str
    cosine: float
    signed: torch.Tensor | None
    identical: bool = False


def _subspace_cosine(source: torch.Tensor, target: torch.Tensor, k: int) -> float:
    """Mean principal-angle cosine between the column spans of source[:, :k] and target[:, :k].

    Rows beyond the shared count are dropped and the truncated source re-orthonormalised, so the
    same formula measures differently sized bases on their shared coordinates.
    """
    rows = min(source.shape[0], target.shape[0])
    a, b = source[:rows, :k].double(), target[:rows, :k].double()
    if source.shape[0] != target.shape[0]:
        a, b = torch.linalg.qr(a).Q, torch.linalg.qr(b).Q
    return float(torch.linalg.svdvals(a.T @ b).clamp(max=1.0).mean())


def overlap(role: str, source: Factors, target: Factors, k: int = TOP_K) -> Overlap:
    """The overlap of one matched pair, in float64."""
    k = min(k, source.S.shape[0], target.S.shape[0])
    u = _subspace_cosine(source.U, target.U, k)
    v = _subspace_cosine(source.Vh.T, target.Vh.T, k)
    if source.U.shape != target.U.shape or source.Vh.shape != target.Vh.shape:
        return Overlap(role, (u + v) / 2, None)
    left = source.U.double().T @ target.U.double()
    right = source.Vh.double() @ target.Vh.double().T
    return Overlap(role, (u + v) / 2, left * right)


def identity_overlap(role: str) -> Overlap:
    return Overlap(role, 1.0, None, identical=True)


def change(z: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """ΔW's singular values in the source basis: s(z − 1), in float64."""
    return s.double() * (z.double() - 1.0)


def held_energy(pair: Overlap, delta: torch.Tensor) -> tuple[float, float] | None:
    """(energy the target basis holds, total energy) of ΔW = U diag(delta) Vᵀ; None where undefined."""
    total = float(delta.square().sum())
    if pair.identical:
        return total, total
    if pair.signed is None:
        return None
    return float((pair.signed.T @ delta).square().sum()), total


def carry_aligned(pair: Overlap, z: torch.Tensor) -> torch.Tensor:
    """z over the target's directions: z'_j = 1 + Σ_i w_ij (z_i − 1) / Σ_i w_ij, w_ij = |u_iᵀu'_j|·|v_iᵀv'_j|.

    Each target direction takes the deviations of the source directions it matches, weighted by how
    much it matches each: a signed permutation of the basis permutes z, and the same basis gives z
    back. z' is a convex combination of the source's z, so it stays within their range whatever the
    target; the least-squares alternative, z'_j = 1 + (U'ᵀ ΔW V')_jj / s'_j, divides by s'_j and can
    throw a leaked head component onto a tail direction with a tiny s'_j at any scale.
    """
    if pair.identical:
        return z.double().clone()
    if pair.signed is None:
        raise BadInputError("the aligned mapping needs a target of the source's shapes; use --mapping position")
    weights = pair.signed.abs()
    mass = weights.sum(dim=0)
    deviation = weights.T @ (z.double() - 1.0)
    return 1.0 + deviation / torch.where(mass > 0, mass, torch.ones_like(mass))


def verdict(energy: float | None, same_shapes: bool = True) -> str:
    """`aligned`, `partial` or `unrelated` from the held energy; `no change` where there is none to hold."""
    if not same_shapes:
        return "unrelated"
    if energy is None:
        return "no change"
    if energy < UNRELATED_ENERGY:
        return "unrelated"
    return "aligned" if energy >= ALIGNED_ENERGY else "partial"


@dataclass(frozen=True)
class RoleAlignment:
    role: str
    matrices: int
    cosine: float
    energy: float | None
    same_shapes: bool

    @property
    def verdict(self) -> str:
        return verdict(self.energy, self.same_shapes)


@dataclass(frozen=True)
class AlignmentReport:
    """The check of one expert against one target: per role, and pooled over every matrix."""

    roles: tuple[RoleAlignment, ...]
    energy: float | None
    same_shapes: bool
    identical: bool
    k: int = TOP_K

    @property
    def verdict(self) -> str:
        return verdict(self.energy, self.same_shapes)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON- and YAML-safe data (stored in the manifest's provenance)."""
        return {
            "verdict": self.verdict,
            "energy": self.energy,
            "same_shapes": self.same_shapes,
            "identical": self.identical,
            "top_k": self.k,
            "thresholds": {"aligned": ALIGNED_ENERGY, "unrelated_below": UNRELATED_ENERGY},
            "roles": {
                r.role: {"matrices": r.matrices, "cosine": r.cosine, "energy": r.energy, "verdict": r.verdict}
                for r in self.roles
            },
        }


def report(
    pairs: Mapping[str, Overlap], held: Mapping[str, tuple[float, float] | None], k: int = TOP_K
) -> AlignmentReport:
    """Pool per-matrix overlaps (target name -> Overlap) and held energies (as `held_energy` gives them).

    A role whose z is 1 everywhere changes nothing and does not count towards the pooled energy; a
    pair of different shapes makes its role and the whole report `unrelated`.
    """
    by_role: dict[str, list[str]] = {}
    for name, pair in pairs.items():
        by_role.setdefault(pair.role, []).append(name)
    roles, pooled_held, pooled_total = [], 0.0, 0.0
    for role, names in by_role.items():
        energies = [held[name] for name in names]
        cosine = sum(pairs[name].cosine for name in names) / len(names)
        defined = [e for e in energies if e is not None]
        role_held, role_total = sum(e[0] for e in defined), sum(e[1] for e in defined)
        pooled_held, pooled_total = pooled_held + role_held, pooled_total + role_total
        same = len(defined) == len(energies)
        energy = role_held / role_total if same and role_total > 0 else None
        roles.append(RoleAlignment(role, len(names), cosine, energy, same))
    same_shapes = all(r.same_shapes for r in roles)
    identical = bool(pairs) and all(p.identical for p in pairs.values())
    energy = pooled_held / pooled_total if same_shapes and pooled_total > 0 else None
    return AlignmentReport(tuple(roles), energy, same_shapes, identical, k)


def require_alignment(found: AlignmentReport, what: str, force: bool) -> None:
    """Refuse an `unrelated` transfer unless forced."""
    if found.verdict == "unrelated" and not force:
        held = (
            "shapes differ" if not found.same_shapes else f"the target's basis holds {found.energy:.1%} of its change"
        )
        raise IntegrityError(
            f"{what}: source and target are unrelated ({held}; aligned needs {ALIGNED_ENERGY:.0%}); "
            "pass --force to transfer anyway"
        )


@dataclass(frozen=True)
class Aligned:
    """Per expert (caller's key): its report and, when carried, z over the target's matrices (float64)."""

    reports: dict[str, AlignmentReport]
    z: dict[str, dict[str, torch.Tensor]]


def align_experts(
    source: LoadedModel,
    target: LoadedModel,
    pairs: Mapping[str, str],
    vectors: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    carry: bool,
    k: int = TOP_K,
) -> Aligned:
    """Check (and with `carry`, map) every expert over the matched pairs (target name -> source name).

    One pass over the pairs serves every expert: each pair's overlap is built once (from both models'
    cached SVD, memory-mapped) and dropped before the next, so a bank costs one model-pair's work.
    """
    identical = source.fingerprint == target.fingerprint
    factors_s: Mapping[str, Factors] = {}
    factors_t: Mapping[str, Factors] = {}
    roles = {t.name: t.role for t in target.targets}
    if not identical:
        wanted_s = {name for name in pairs.values()}
        factors_s = decompose(source, [t for t in source.targets if t.name in wanted_s], resident=False).factors
        factors_t = decompose(target, [t for t in target.targets if t.name in pairs], resident=False).factors
    overlaps: dict[str, dict[str, Overlap]] = {key: {} for key in vectors}
    held: dict[str, dict[str, tuple[float, float] | None]] = {key: {} for key in vectors}
    carried: dict[str, dict[str, torch.Tensor]] = {key: {} for key in vectors}
    for target_name, source_name in pairs.items():
        users = [key for key, z in vectors.items() if source_name in z]
        if not users:
            continue
        role = roles[target_name]
        pair = identity_overlap(role) if identical else overlap(role, factors_s[source_name], factors_t[target_name], k)
        for key in users:
            z = vectors[key][source_name]
            # Identical weights hold every share whole, so the pooling weights (s) need no SVD there.
            s = torch.ones(z.shape[0]) if identical else factors_s[source_name].S
            overlaps[key][target_name] = Overlap(role, pair.cosine, None, pair.identical)
            held[key][target_name] = held_energy(pair, change(z, s))
            if carry:
                carried[key][target_name] = carry_aligned(pair, z)
    reports = {key: report(overlaps[key], held[key], k) for key in vectors}
    return Aligned(reports, carried if carry else {})
