"""How closely a rank-k LoRA reproduces an SVF expert, read off the spectra alone (no new SVD).

An SVF expert changes W = U diag(s) Vh into W' = U diag(s') Vh, so its weight change

    ΔW = U diag(c) Vh,   c = s' − s

is already a singular value decomposition (U and V orthonormal, |c| the singular values). By
Eckart–Young its best rank-k approximation keeps the k entries of c largest in magnitude:
ΔW_k = B A with B = U_k diag(c_k), A = Vh_k. Every error is then a sum over the dropped entries:

    ‖ΔW − ΔW_k‖²_F = Σ_dropped c_i²        ‖W'‖²_F = Σ s'_i²

The report's two measures: energy kept, Σ_kept c² / Σ c² (per matrix, per role, overall), and the
relative weight error ‖ΔW − ΔW_k‖_F / ‖W'‖_F, the share of the adapted weight the export misses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from t2cli.errors import BadInputError
from t2cli.svf import Factors, adapted_spectrum


def check_budget(rank: int | None, energy: float | None) -> None:
    """Exactly one of --rank K (>= 1) or --energy E (in (0, 1]); raised before any model loads."""
    if rank is not None and energy is not None:
        raise BadInputError("give --rank or --energy, not both")
    if rank is None and energy is None:
        raise BadInputError("a LoRA export needs --rank K or --energy E (e.g. --rank 64)")
    if rank is not None and rank < 1:
        raise BadInputError(f"--rank must be >= 1, got {rank}")
    if energy is not None and not 0 < energy <= 1:
        raise BadInputError(f"--energy must be in (0, 1], got {energy}")


def spectrum_change(factors: Factors, z: torch.Tensor, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(c = s' − s, s') in fp32 for one matrix."""
    s = factors.S.float()
    adapted = adapted_spectrum(s, z.to(s.device, torch.float32), rule)
    return adapted - s, adapted


def kept_components(change: torch.Tensor, rank: int) -> torch.Tensor:
    """Indices of the `rank` entries of c largest in magnitude (ties broken by position, stably)."""
    order = torch.sort(change.abs(), descending=True, stable=True).indices
    return order[: min(rank, change.numel())]


def rank_for_energy(change: torch.Tensor, energy: float) -> int:
    """The smallest k whose top-k components hold `energy` of Σ c² (at least 1: PEFT needs r >= 1)."""
    squares = torch.sort(change.double() ** 2, descending=True).values
    total = float(squares.sum())
    if total == 0:
        return 1
    cumulative = torch.cumsum(squares, 0)
    # A relative slack so that energy = 1 is met by the full sum despite round-off.
    k = int(torch.searchsorted(cumulative, torch.tensor(energy * total * (1 - 1e-12), dtype=torch.float64))) + 1
    return max(1, min(k, change.numel()))


def plan_ranks(changes: Mapping[str, torch.Tensor], *, rank: int | None, energy: float | None) -> dict[str, int]:
    """The rank each matrix keeps: `rank` everywhere (capped at the matrix's own), or per matrix by energy."""
    check_budget(rank, energy)
    if rank is not None:
        return {name: min(rank, change.numel()) for name, change in changes.items()}
    return {name: rank_for_energy(change, energy) for name, change in changes.items()}  # type: ignore[arg-type]


@dataclass(frozen=True)
class MatrixFidelity:
    """One matrix's rank-k approximation, in sums of squares (so roles and the total add up)."""

    name: str
    role: str
    rank: int
    full_rank: int
    change_sq: float  # ‖ΔW‖²_F = Σ c²
    kept_sq: float  # ‖ΔW_k‖²_F
    adapted_sq: float  # ‖W'‖²_F = Σ s'²

    @property
    def energy(self) -> float:
        return self.kept_sq / self.change_sq if self.change_sq > 0 else 1.0

    @property
    def error(self) -> float:
        return math.sqrt(max(self.change_sq - self.kept_sq, 0.0) / self.adapted_sq) if self.adapted_sq > 0 else 0.0


def matrix_fidelity(name: str, role: str, change: torch.Tensor, adapted: torch.Tensor, rank: int) -> MatrixFidelity:
    squares = change.double() ** 2
    return MatrixFidelity(
        name=name,
        role=role,
        rank=rank,
        full_rank=change.numel(),
        change_sq=float(squares.sum()),
        kept_sq=float(squares[kept_components(change, rank)].sum()),
        adapted_sq=float((adapted.double() ** 2).sum()),
    )


@dataclass(frozen=True)
class GroupFidelity:
    """Matrices summed together: a role, or all of them."""

    label: str
    matrices: int
    min_rank: int
    max_rank: int
    energy: float
    max_error: float

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "label": self.label,
            "matrices": self.matrices,
            "min_rank": self.min_rank,
            "max_rank": self.max_rank,
            "energy": round(self.energy, 6),
            "max_error": float(f"{self.max_error:.4g}"),
        }


def group(label: str, items: list[MatrixFidelity]) -> GroupFidelity:
    change = sum(m.change_sq for m in items)
    return GroupFidelity(
        label=label,
        matrices=len(items),
        min_rank=min(m.rank for m in items),
        max_rank=max(m.rank for m in items),
        energy=sum(m.kept_sq for m in items) / change if change > 0 else 1.0,
        max_error=max(m.error for m in items),
    )


@dataclass(frozen=True)
class FidelityReport:
    matrices: list[MatrixFidelity]

    def roles(self) -> list[GroupFidelity]:
        by_role: dict[str, list[MatrixFidelity]] = {}
        for m in self.matrices:
            by_role.setdefault(m.role, []).append(m)
        return [group(role, items) for role, items in by_role.items()]

    def overall(self) -> GroupFidelity:
        return group("all", self.matrices)

    def rows(self) -> list[GroupFidelity]:
        return [*self.roles(), self.overall()]

    def to_dict(self) -> dict[str, object]:
        return {"roles": [g.to_dict() for g in self.roles()], "overall": self.overall().to_dict()}

    def markdown(self) -> str:
        lines = [
            "| matrices | count | rank | energy kept | max ‖ΔW−ΔW_k‖/‖W′‖ |",
            "|---|---:|---:|---:|---:|",
        ]
        for g in self.rows():
            ranks = str(g.min_rank) if g.min_rank == g.max_rank else f"{g.min_rank}–{g.max_rank}"
            lines.append(f"| {g.label} | {g.matrices} | {ranks} | {g.energy:.4%} | {g.max_error:.2e} |")
        return "\n".join(lines)


@dataclass(frozen=True)
class FidelityCurve:
    """Overall energy kept and largest relative weight error at each uniform rank (what `--plot` draws)."""

    ranks: list[int]
    energy: list[float]
    max_error: list[float]


def fidelity_curve(spectra: Mapping[str, tuple[torch.Tensor, torch.Tensor]], ranks: list[int]) -> FidelityCurve:
    """The report's overall numbers at every rank in `ranks`, from the spectra (c, s') of each matrix."""
    kept = torch.zeros(len(ranks), dtype=torch.float64)
    worst = torch.zeros(len(ranks), dtype=torch.float64)
    total = 0.0
    index = torch.tensor(ranks) - 1
    for change, adapted in spectra.values():
        squares = torch.sort(change.double() ** 2, descending=True).values
        cumulative = torch.cumsum(squares, 0)
        at = cumulative[index.clamp_max(squares.numel() - 1)]
        kept += at
        norm = float((adapted.double() ** 2).sum())
        if norm > 0:
            worst = torch.maximum(worst, ((cumulative[-1] - at).clamp_min(0) / norm).sqrt())
        total += float(cumulative[-1])
    energy = (kept / total).tolist() if total > 0 else [1.0] * len(ranks)
    return FidelityCurve(list(ranks), energy, worst.tolist())
