"""Training through SVF without keeping W′ = U diag(s ⊙ z) Vh: the side path, or a W′ rebuilt per call.

A targeted linear layer computes y = W x + U_k (c ⊙ (V_kᵀ x)), c = s′_k − s_k, where s′ is the
adapted spectrum and k the number of singular values z may move (all of them, or `--rank k`). The
gradient reaches c (hence z) through two thin products, ∂L/∂c = Σ_tokens (Uᵀ ∂L/∂y) ⊙ (V_kᵀ x),
while autograd keeps one tokens × k tensor per layer instead of an m × n W′ and its gradient: a
rank-k LoRA's shape and cost. At c = 0 the added term is an exact zero, so z = 1 gives the base
outputs bit for bit.

For the full spectrum over long micro-batches the thin products cost more than W′ itself, so such a
call computes with W′ = W + U_k diag(c) V_kᵀ (`_RebuiltLinear`), keeping no m × n gradient: either
rebuilt for its forward and again for its backward (one m × n matrix exists at a time, not one per
target), or kept across calls while c is unchanged (`KeptWeights`: built once a training step, for one
weights-sized copy without gradient). `cheaper_route` picks per call; every route gives the gradient
of the materialised W′ (tests/test_side_path.py checks it in fp64).

The factors are frozen parameters of a child module of each targeted layer (`SideFactors`), so
torch FSDP shards them with the layer that owns them; the adapted forward is installed only while a
block runs (`attached`), so the same model still serves the base, or a materialised expert.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

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


ROUTES = ("auto", "side", "rebuilt")


def cheaper_route(shape: torch.Size | tuple[int, int], rank: int, tokens: int) -> str:
    """`side` or `rebuilt`, whichever costs fewer multiply-adds for one forward and backward.

    Beyond the base layer's own work, the side path costs ~6 (m + n) k per token (two thin products
    forward, three back); rebuilding W′ = W + U_k diag(c) V_kᵀ costs ~6 m n k per call (built forward,
    built again backward, and ∂L/∂c = diag(U_kᵀ G V_k)) plus 2 m n per token for G = ∂L/∂Yᵀ X. Thin
    ranks or few tokens take the side path; the full spectrum over a long micro-batch is rebuilt."""
    m, n = shape
    return "side" if 3 * (m + n) * rank * tokens <= 3 * m * n * rank + m * n * tokens else "rebuilt"


class KeptWeights:
    """W′ = W + U_k diag(c) V_kᵀ of each layer for the change c it was built with, reused while c is unchanged.

    z moves once a training step (Adam), but a step runs forward and backward over every micro-batch, and
    again under recomputation: keeping W′ builds it once a step instead of twice a call. It costs one
    weights-sized copy of the targets without gradient, so only full-spectrum policies of whole (unsharded)
    layers keep it; a change is compared by value, so a stale W′ is never used."""

    def __init__(self) -> None:
        self._built: dict[SideFactors, tuple[torch.Tensor, torch.Tensor]] = {}

    def weight(self, weight: torch.Tensor, side: SideFactors, change: torch.Tensor) -> torch.Tensor:
        change = change.detach()
        kept = self._built.get(side)
        if kept is not None and torch.equal(kept[0], change):
            return kept[1]
        built = _rebuilt(weight, side.U, side.Vh, change)
        self._built[side] = (change.clone(), built)
        return built


class _RebuiltLinear(torch.autograd.Function):
    """y = x W′ᵀ + b with W′ = W + U diag(c) Vh, rebuilt for the call and again for the backward (or kept).

    Autograd keeps only x, as the base layer would, and no m × n gradient: ∂L/∂c comes from the thinner of
    two exact forms, Σ_tokens (Uᵀ g) ⊙ (Vh x) or ((Uᵀ G) ⊙ Vh)·1 with G = Σ_tokens g xᵀ."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        side: SideFactors,
        change: torch.Tensor,
        kept: KeptWeights | None,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight, change)
        ctx.side, ctx.kept = side, kept
        return torch.nn.functional.linear(x, _weight(weight, side, change, kept), bias)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, torch.Tensor | None, None]:
        x, weight, change = ctx.saved_tensors
        U, Vh = ctx.side.U, ctx.side.Vh
        grad_x = grad_change = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ _weight(weight, ctx.side, change, ctx.kept)
        if ctx.needs_input_grad[4]:
            wide = torch.promote_types(weight.dtype, torch.float32)
            grads, inputs = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
            (m, n), k, tokens = weight.shape, change.numel(), grads.shape[0]
            if tokens * (m + n) * k <= tokens * m * n + m * n * k:
                grad_change = ((grads.to(wide) @ U.to(wide)) * (inputs.to(wide) @ Vh.to(wide).T)).sum(0)
            else:
                outer = grads.T.to(wide) @ inputs.to(wide)
                grad_change = ((U.to(wide).T @ outer) * Vh.to(wide)).sum(1)
            grad_change = grad_change.to(change.dtype)
        return grad_x, None, None, None, grad_change, None


def _weight(weight: torch.Tensor, side: SideFactors, change: torch.Tensor, kept: KeptWeights | None) -> torch.Tensor:
    return kept.weight(weight, side, change) if kept is not None else _rebuilt(weight, side.U, side.Vh, change)


def _rebuilt(weight: torch.Tensor, U: torch.Tensor, Vh: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """W + U diag(c) Vh in W's dtype, the change built in fp32 at least (W itself, bit for bit, at c = 0)."""
    wide = torch.promote_types(weight.dtype, torch.float32)
    return (weight.to(wide) + (U.to(wide) * change.to(wide)) @ Vh.to(wide)).to(weight.dtype)


def adapted_forward(
    layer: torch.nn.Module, x: torch.Tensor, *, change: torch.Tensor, route: str, kept: KeptWeights | None = None
) -> torch.Tensor:
    """The targeted layer's output under W′ = W + U_k diag(c) V_kᵀ, by the side path or through W′ itself.

    A kept W′ is built once for many calls, which makes it the cheaper route whatever the tokens."""
    side = getattr(layer, CHILD)
    if route == "auto" and kept is not None:
        route = "rebuilt"
    elif route == "auto":
        route = cheaper_route(layer.weight.shape, change.numel(), x.numel() // x.shape[-1])
    if route == "rebuilt":
        return _RebuiltLinear.apply(x, layer.weight, layer.bias, side, change, kept)
    base = torch.nn.functional.linear(x, layer.weight, layer.bias)
    return base + side(x, change).to(base.dtype)


Installed = list[tuple[torch.nn.Module, torch.Tensor]]  # (targeted layer, its change c)


def _install(pairs: Installed, route: str, kept: KeptWeights | None) -> list[object]:
    """Give each layer its adapted forward; return what each had before (None: the class's own)."""
    before = [layer.__dict__.get("forward") for layer, _ in pairs]
    for layer, change in pairs:
        # An instance attribute shadows the class's forward; removing it restores the layer exactly.
        layer.forward = functools.partial(adapted_forward, layer, change=change, route=route, kept=kept)
    return before


def _restore(pairs: Installed, before: list[object]) -> None:
    for (layer, _), previous in zip(pairs, before, strict=True):
        if previous is None:
            layer.__dict__.pop("forward", None)
        else:
            layer.forward = previous


def _recomputed_forward(
    block: torch.nn.Module, pairs: Installed, route: str, kept: KeptWeights | None, *args: Any, **kwargs: Any
) -> Any:
    """The block's forward under activation checkpointing: only its inputs are kept, and the backward runs
    it again, with its targets' adapted forwards installed again for that run (the block has long left
    `attached` by then)."""

    def run(*inner_args: Any, **inner_kwargs: Any) -> Any:
        before = _install(pairs, route, kept)
        try:
            return type(block).forward(block, *inner_args, **inner_kwargs)
        finally:
            _restore(pairs, before)

    if not torch.is_grad_enabled():
        return run(*args, **kwargs)
    return checkpoint(run, *args, use_reentrant=False, **kwargs)


@contextmanager
def attached(
    model: torch.nn.Module,
    changes: Mapping[str, torch.Tensor],
    route: str = "auto",
    recompute: Sequence[torch.nn.Module] = (),
    kept: KeptWeights | None = None,
) -> Iterator[None]:
    """Within the block, each layer named in `changes` computes with W′ = W + U_k diag(c) V_kᵀ (`route`:
    the side path, a rebuilt W′, or per call whichever is cheaper); outside it, as loaded.

    `recompute`: blocks (decoder layers) that keep only their inputs for the backward and run again there,
    trading a second forward for the activations of every layer at once. `kept`: where W′ is kept between
    calls (the `rebuilt` route, and `auto`'s choice, then build it only when a change moves)."""
    if route not in ROUTES:
        raise ValueError(f"route {route!r} is not one of {ROUTES}")
    pairs = [(model.get_submodule(name.removesuffix(".weight")), change) for name, change in changes.items()]
    blocks = [(block, _inside(block, pairs)) for block in recompute]
    before = _install(pairs, route, kept)
    for block, inside in blocks:
        block.forward = functools.partial(_recomputed_forward, block, inside, route, kept)
    try:
        yield
    finally:
        for block, _ in blocks:
            block.__dict__.pop("forward", None)
        _restore(pairs, before)


def _inside(block: torch.nn.Module, pairs: Installed) -> Installed:
    members = {id(module) for module in block.modules()}
    return [(layer, change) for layer, change in pairs if id(layer) in members]
