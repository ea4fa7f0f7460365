"""Singular Value Fine-tuning: adapt W = U diag(s) Vh only through a vector z on its spectrum.

    W'(z) = U diag(s ⊙ z) Vh                    (the SVF equation)
          = W + U diag(s ⊙ (z − 1)) Vh          (delta form, what serving materialises)
    W'(z) x = W x + U_k (c_k ⊙ (V_kᵀ x))        (side form, what training runs; c = s ⊙ (z − 1))

The delta form returns the base weights bit for bit at z = 1, so the SVD's round-off never
leaks into base behaviour; the side form adds an exact zero there. The side form never builds W′
or an m × n gradient: with z − 1 supported on the top k singular values it holds k columns of U
and V, the shape (and cost) of a rank-k LoRA (t2cli/side_path.py).

With the `nuclear` rule the adapted spectrum is rescaled so that Σ s ⊙ z = Σ s (the reference
implementation's choice): the nuclear norm of W' stays that of W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from t2cli.errors import BadInputError

RULES = ("none", "nuclear")


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise BadInputError(f"unknown SVF rule {rule!r}; use one of {', '.join(RULES)}")
    return rule


def adapted_spectrum(s: torch.Tensor, z: torch.Tensor, rule: str = "none") -> torch.Tensor:
    """s ⊙ z, rescaled to the original nuclear norm under the `nuclear` rule."""
    scaled = s * z
    if rule == "nuclear":
        scaled = scaled * (s.sum() / scaled.sum())
    return scaled


def weight_delta(factors: Factors, z: torch.Tensor, rule: str = "none") -> torch.Tensor:
    """U diag(s' − s) Vh in fp32, where s' is the adapted spectrum."""
    s = factors.S.to(z.device, torch.float32)
    change = adapted_spectrum(s, z.float(), rule) - s
    return (factors.U.to(z.device, torch.float32) * change) @ factors.Vh.to(z.device, torch.float32)


def is_identity(z: torch.Tensor) -> bool:
    return not z.requires_grad and bool(torch.all(z == 1))


def adapted_weight(weight: torch.Tensor, factors: Factors, z: torch.Tensor, rule: str = "none") -> torch.Tensor:
    """W'(z) in W's dtype, built in fp32 (not differentiable: training takes the side path); W itself
    (same tensor) when z is exactly 1."""
    if is_identity(z):
        return weight
    with torch.no_grad():
        return (weight.float() + weight_delta(factors, z.to(weight.device).detach(), rule)).to(weight.dtype)


def identity(factors: Mapping[str, Factors]) -> dict[str, torch.Tensor]:
    """z = 1 for every matrix: the base model."""
    return {name: torch.ones_like(f.S, dtype=torch.float32) for name, f in factors.items()}


def check_vectors(z: Mapping[str, torch.Tensor], factors: Mapping[str, Factors]) -> None:
    """Refuse z vectors that do not fit the factors (unknown matrix, wrong length, NaN or inf)."""
    for name, vector in z.items():
        if name not in factors:
            raise BadInputError(f"z names {name!r}, which is not a decomposed target; check the expert's base model")
        if vector.shape != factors[name].S.shape:
            raise BadInputError(
                f"z for {name} has shape {tuple(vector.shape)}, expected {tuple(factors[name].S.shape)}"
            )
        if not torch.isfinite(vector).all():
            raise BadInputError(f"z for {name} contains NaN or inf; retrain or recompose the expert")


class LiveAdapter:
    """Swaps adapted weights into a model in place and restores the base weights exactly.

    The base tensors stay referenced (not copied) while an expert is applied, so restoring is
    exact and costs nothing; applying builds each W'(z) once, from the base, never from a
    previously adapted weight, so swaps do not accumulate error.
    """

    def __init__(self, model: torch.nn.Module, factors: Mapping[str, Factors], rule: str = "none") -> None:
        self.model = model
        self.factors = dict(factors)
        self.rule = check_rule(rule)
        self._params = {name: p for name, p in model.named_parameters() if name in self.factors}
        missing = set(self.factors) - set(self._params)
        if missing:
            raise BadInputError(f"model has no parameter {sorted(missing)[0]!r}; factors belong to another model")
        self._base = {name: p.data for name, p in self._params.items()}
        self.swaps = 0
        self.active = False

    @torch.no_grad()
    def apply(self, z: Mapping[str, torch.Tensor] | None, rule: str | None = None) -> None:
        """Load W'(z) for the matrices named in z (others get their base weights); None = base."""
        z = z or {}
        check_vectors(z, self.factors)
        rule = check_rule(rule or self.rule)
        for name, param in self._params.items():
            base = self._base[name]
            vector = z.get(name)
            param.data = base if vector is None else adapted_weight(base, self.factors[name], vector, rule)
        self.swaps += 1
        self.active = bool(z)

    def restore(self) -> None:
        self.apply(None)


@dataclass(frozen=True)
class Factors:
    """W ≈ U diag(S) Vh for one target matrix."""

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
