"""SVF's side form: adapted layers that never build W′ = U diag(s ⊙ z) Vh.

A targeted linear layer computes y = W x + U_k (c ⊙ (V_kᵀ x)), c = s′_k − s_k, where s′ is the
adapted spectrum and k the number of singular values z may move (all of them, or `--rank k`). The
gradient reaches c (hence z) through two thin products, ∂L/∂c = Σ_tokens (Uᵀ ∂L/∂y) ⊙ (V_kᵀ x),
the same number the materialised W′ gives (tests/test_side_path.py checks it in fp64), while autograd
keeps one tokens × k tensor per layer instead of an m × n W′ and its gradient: a rank-k LoRA's shape
and cost. At c = 0 the added term is an exact zero, so z = 1 gives the base outputs bit for bit.

The factors are frozen parameters of a child module of each targeted layer (`SideFactors`), so
torch FSDP shards them with the layer that owns them; the hooks that add the term are attached only
while a forward runs (`attached`), so the same model still serves the base, or a materialised expert.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from t2cli.svf import Factors, adapted_spectrum

CHILD = "t2_side"


class SideFactors(torch.nn.Module):
    """The top-k singular triplets of one target, in the layer's own dtype and device."""

    def __init__(self, factors: Factors, rank: int, weight: torch.Tensor) -> None:
        super().__init__()
        # Frozen parameters, not buffers: FSDP shards parameters (buffers are replicated).
        self.U = torch.nn.Parameter(factors.U[:, :rank].to(weight.device, weight.dtype).contiguous(), False)
        self.Vh = torch.nn.Parameter(factors.Vh[:rank].to(weight.device, weight.dtype).contiguous(), False)
        # The spectrum (and so c) in fp32 at least: a bf16 s would round the change itself.
        spectrum_dtype = torch.promote_types(weight.dtype, torch.float32)
        self.register_buffer("S", factors.S[:rank].to(weight.device, spectrum_dtype).clone(), persistent=False)

    def forward(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """U_k (change ⊙ V_kᵀ x) for a batch of inputs x (…, n)."""
        projected = torch.nn.functional.linear(x.to(self.Vh.dtype), self.Vh)
        return torch.nn.functional.linear(projected * change.to(projected.dtype), self.U)


def side_change(side: SideFactors, delta: torch.Tensor, rule: str) -> torch.Tensor:
    """c = s′ − s for z = 1 + δ over the singular values the side holds, differentiable in δ.

    The `nuclear` rule couples every singular value (it rescales them all), so it is only trained at
    full rank, where the side holds the whole spectrum."""
    if rule == "none":
        return side.S * delta
    return adapted_spectrum(side.S, 1 + delta, rule) - side.S


def attach(model: torch.nn.Module, factors: Mapping[str, Factors], ranks: Mapping[str, int]) -> dict[str, SideFactors]:
    """Add a `SideFactors` child to each targeted layer (named by its weight, e.g. `…q_proj.weight`)."""
    sides = {}
    for name, f in factors.items():
        layer = model.get_submodule(name.removesuffix(".weight"))
        side = SideFactors(f, ranks[name], layer.weight)
        layer.add_module(CHILD, side)
        sides[name] = side
    return sides


@contextmanager
def attached(model: torch.nn.Module, changes: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Within the block, each layer named in `changes` outputs W x + U_k (c ⊙ V_kᵀ x)."""

    def hook(layer: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor, *, name: str) -> object:
        return output + getattr(layer, CHILD)(args[0], changes[name]).to(output.dtype)

    handles = []
    try:
        for name in changes:
            layer = model.get_submodule(name.removesuffix(".weight"))
            handles.append(layer.register_forward_hook(functools.partial(hook, name=name)))
        yield
    finally:
        for handle in handles:
            handle.remove()
