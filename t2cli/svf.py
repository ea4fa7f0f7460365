"""Singular Value Fine-tuning: adapt W = U diag(s) Vh only through a vector z on its spectrum.

    W'(z) = U diag(s ⊙ z) Vh                    (the SVF equation)
          = W + U diag(s ⊙ (z − 1)) Vh          (delta form, what t2 materialises)

The delta form returns the base weights bit for bit at z = 1, so the SVD's round-off never
leaks into base behaviour. With the `nuclear` rule the adapted spectrum is rescaled so that
Σ s ⊙ z = Σ s (the reference implementation's choice): the nuclear norm of W' stays that of W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


class _SpectralUpdate(torch.autograd.Function):
    """W + U diag(c) Vh, built in fp32 and cast to W's dtype, differentiable in c alone.

    Autograd through the plain expression would keep U diag(c) (m x r, fp32) of every matrix for
    the backward pass, about as much memory as the weights themselves. The gradient needs only the
    factors, which stay resident anyway: ∂L/∂c_k = Σ_ij U_ik G_ij Vh_kj = ((Uᵀ G) ⊙ Vh).sum(1).
    """

    @staticmethod
    def forward(
        ctx: Any, weight: torch.Tensor, U: torch.Tensor, Vh: torch.Tensor, change: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(U, Vh)
        delta = (U.to(change.device, torch.float32) * change) @ Vh.to(change.device, torch.float32)
        return (weight.float() + delta).to(weight.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None, torch.Tensor]:
        U, Vh = ctx.saved_tensors
        projected = U.to(grad.device, torch.float32).T @ grad.float()
        return None, None, None, (projected * Vh.to(grad.device, torch.float32)).sum(1)


def is_identity(z: torch.Tensor) -> bool:
    return not z.requires_grad and bool(torch.all(z == 1))


def adapted_weight(weight: torch.Tensor, factors: Factors, z: torch.Tensor, rule: str = "none") -> torch.Tensor:
    """W'(z) in W's dtype; differentiable in z; W itself (same tensor) when z is exactly 1."""
    if is_identity(z):
        return weight
    z = z.to(weight.device)
    s = factors.S.to(weight.device, torch.float32)
    change = adapted_spectrum(s, z.float(), rule) - s
    return _SpectralUpdate.apply(weight.detach(), factors.U, factors.Vh, change)


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


def adapted_weights(
    params: Mapping[str, torch.Tensor],
    factors: Mapping[str, Factors],
    z: Mapping[str, torch.Tensor],
    rule: str = "none",
) -> dict[str, torch.Tensor]:
    """W'(z) for every matrix named in z, built from the live base parameters.

    With z requiring grad this is the differentiable path a trainer uses with `functional_forward`:
    gradients reach z and nothing else, and no second copy of the model is kept between steps.
    """
    return {name: adapted_weight(params[name], factors[name], vector, rule) for name, vector in z.items()}


def functional_forward(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], /, **inputs: Any) -> Any:
    """Run the model with some parameters replaced by the given tensors (no module is modified)."""
    return torch.func.functional_call(model, dict(weights), args=(), kwargs=inputs, strict=False, tie_weights=True)


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
