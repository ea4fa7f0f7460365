"""The side form W x + U_k (c ⊙ V_kᵀ x): the materialised W′'s gradient, bit-exact base, k columns held."""

from __future__ import annotations

import pytest
import torch

from t2cli import side_path
from t2cli.svf import Factors, adapted_spectrum
from t2cli.training.policy import SVFPolicy
from tests.helpers import build_tiny_model, tiny_loaded

TOKENS = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 1, 0, 6]])


def _fp64_model_and_factors(model_type: str = "llama"):
    model = build_tiny_model(model_type, seed=3, initializer_range=0.3).double()
    factors = {}
    for name, weight in model.named_parameters():
        if name.endswith("proj.weight"):
            U, S, Vh = torch.linalg.svd(weight.detach(), full_matrices=False)
            factors[name] = Factors(U, S, Vh)
    return model, factors


def _route(route: str) -> tuple[str, tuple, side_path.KeptWeights | None]:
    """`attached`'s route, recompute and kept arguments for a test's route name (`kept`: rebuilt, W′ kept)."""
    return ("rebuilt", (), side_path.KeptWeights()) if route == "kept" else (route, (), None)


def _loss(logits: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), TOKENS[:, 1:].reshape(-1))


def _materialised_gradient(model, factors, deltas, rule, ranks):
    """The gradient of z through W′ = W + U diag(s′ − s) Vh built whole (what training did before)."""
    deltas = {name: d.detach().clone().requires_grad_() for name, d in deltas.items()}
    weights = {}
    for name, f in factors.items():
        z = torch.nn.functional.pad(1 + deltas[name], (0, f.S.numel() - ranks[name]), value=1.0)
        change = adapted_spectrum(f.S, z, rule) - f.S
        weights[name] = model.get_parameter(name) + (f.U * change) @ f.Vh
    logits = torch.func.functional_call(model, weights, args=(TOKENS,), strict=False, tie_weights=True).logits
    _loss(logits).backward()
    return {name: d.grad for name, d in deltas.items()}


@pytest.mark.parametrize("route", ["side", "rebuilt", "kept"])
@pytest.mark.parametrize(("rule", "rank", "model_type"), [("none", None, "llama"), ("none", 5, "qwen2"),
                                                          ("nuclear", None, "llama")])  # fmt: skip
def test_side_path_gradient_equals_the_materialised_one_in_fp64(rule, rank, model_type, route) -> None:
    model, factors = _fp64_model_and_factors(model_type)
    ranks = {name: min(rank or f.S.numel(), f.S.numel()) for name, f in factors.items()}
    generator = torch.Generator().manual_seed(1)
    deltas = {
        name: (0.3 * torch.randn(ranks[name], generator=generator, dtype=torch.float64)).requires_grad_()
        for name in factors
    }
    expected = _materialised_gradient(model, factors, deltas, rule, ranks)
    sides = side_path.attach(model, factors, ranks)
    changes = {name: side_path.side_change(sides[name], deltas[name], rule) for name in factors}
    with side_path.attached(model, changes, *_route(route)):
        _loss(model(TOKENS).logits).backward()
    for name, delta in deltas.items():
        assert delta.grad.shape == (ranks[name],)
        assert torch.allclose(delta.grad, expected[name], rtol=0, atol=1e-10), name
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("route", ["side", "rebuilt", "kept"])
@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "qwen2"])
def test_z_equal_one_gives_the_base_outputs_bit_for_bit(model_type, route) -> None:
    model, factors = _fp64_model_and_factors(model_type)
    base = model(TOKENS).logits
    sides = side_path.attach(model, factors, {name: f.S.numel() for name, f in factors.items()})
    zero = {name: torch.zeros_like(f.S, requires_grad=True) for name, f in factors.items()}
    changes = {name: side_path.side_change(sides[name], zero[name], "none") for name in zero}
    with side_path.attached(model, changes, *_route(route)):
        assert torch.equal(model(TOKENS).logits, base)
    assert torch.equal(model(TOKENS).logits, base)  # the hooks are gone after the block


def test_a_rank_k_policy_holds_k_columns_and_leaves_the_callers_model_alone(t2_home) -> None:
    from t2cli.svd import decompose

    loaded = tiny_loaded("llama", seed=4)
    names_before = [name for name, _ in loaded.model.named_parameters()]
    policy = SVFPolicy(loaded, decompose(loaded).factors, "none", rank=3)
    for name, side in policy.sides.items():
        rows, cols = loaded.model.get_parameter(name).shape
        assert side.U.shape == (rows, 3) and side.Vh.shape == (3, cols)
        assert policy.delta[name].shape == (3,)
    assert [name for name, _ in loaded.model.named_parameters()] == names_before
    z = policy.z()
    assert all(v.numel() == min(loaded.model.get_parameter(n).shape) for n, v in z.items())


def test_thin_ranks_take_the_side_path_and_the_full_spectrum_over_many_tokens_a_rebuilt_weight() -> None:
    assert side_path.cheaper_route((576, 576), 64, tokens=2048) == "side"
    assert side_path.cheaper_route((576, 576), 576, tokens=2048) == "rebuilt"
    assert side_path.cheaper_route((576, 576), 576, tokens=16) == "side"
    with pytest.raises(ValueError, match="route"), side_path.attached(torch.nn.Linear(2, 2), {}, "bogus"):
        pass


@pytest.mark.parametrize("route", ["side", "rebuilt", "kept"])
def test_recomputed_layers_give_the_same_gradient_and_restore_the_model(route) -> None:
    model, factors = _fp64_model_and_factors()
    ranks = {name: f.S.numel() for name, f in factors.items()}
    generator = torch.Generator().manual_seed(2)
    deltas = {name: (0.3 * torch.randn(r, generator=generator, dtype=torch.float64)).requires_grad_() for name, r in
              ranks.items()}  # fmt: skip
    expected = _materialised_gradient(model, factors, deltas, "none", ranks)
    base = model(TOKENS).logits
    sides = side_path.attach(model, factors, ranks)
    changes = {name: side_path.side_change(sides[name], deltas[name], "none") for name in factors}
    route, _, kept = _route(route)
    with side_path.attached(model, changes, route, recompute=list(model.model.layers), kept=kept):
        loss = _loss(model(TOKENS).logits)
    loss.backward()  # the layers run again here, outside the block, with their adapted forwards
    for name, delta in deltas.items():
        assert torch.allclose(delta.grad, expected[name], rtol=0, atol=1e-10), name
    assert torch.equal(model(TOKENS).logits, base)
    assert all("forward" not in module.__dict__ for module in model.modules())


@pytest.mark.parametrize("tokens", [2, 40])  # the two forms of ∂L/∂c: thin projections, and through G = Σ g xᵀ
def test_a_layer_through_w_prime_gives_the_materialised_gradient_by_either_form(tokens) -> None:
    generator = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6, dtype=torch.float64))
    layer = model[0]
    U, S, Vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
    side = side_path.attach(model, {"0.weight": Factors(U, S, Vh)}, {"0.weight": 5})["0.weight"]
    delta = (0.3 * torch.randn(5, generator=generator, dtype=torch.float64)).requires_grad_()
    x = torch.randn(tokens, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    side_path.adapted_forward(layer, x, change=side.S * delta, route="rebuilt").square().sum().backward()
    delta_twin, x_twin = delta.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    weight = layer.weight + (U * (S * delta_twin)) @ Vh
    torch.nn.functional.linear(x_twin, weight, layer.bias).square().sum().backward()
    assert torch.allclose(delta.grad, delta_twin.grad, rtol=0, atol=1e-10)
    assert torch.allclose(x.grad, x_twin.grad, rtol=0, atol=1e-10)


def test_a_kept_weight_is_built_once_per_change_and_never_used_stale() -> None:
    model, factors = _fp64_model_and_factors()
    name = next(iter(factors))
    sides = side_path.attach(model, factors, {n: f.S.numel() for n, f in factors.items()})
    layer, side = model.get_submodule(name.removesuffix(".weight")), sides[name]
    kept = side_path.KeptWeights()
    change = side.S * 0.1
    first = kept.weight(layer.weight, side, change)
    assert kept.weight(layer.weight, side, change.clone()) is first  # the same change: no second build
    moved = kept.weight(layer.weight, side, side.S * 0.2)
    assert moved is not first
    assert torch.allclose(moved, layer.weight + (side.U * (side.S * 0.2)) @ side.Vh, rtol=0, atol=1e-12)


def test_a_full_spectrum_policy_keeps_w_prime_where_it_fits_and_a_rank_k_one_does_not(t2_home, monkeypatch) -> None:
    from t2cli.svd import decompose
    from t2cli.training import policy as policy_module

    loaded = tiny_loaded("llama", seed=4)
    factors = decompose(loaded).factors
    targets_bytes = sum(loaded.model.get_parameter(name).nbytes for name in factors)
    monkeypatch.setattr(policy_module, "free_memory_bytes", lambda device: 4 * targets_bytes)
    assert SVFPolicy(loaded, factors, "none").kept is not None
    assert SVFPolicy(loaded, factors, "none", rank=3).kept is None
    assert SVFPolicy(loaded, factors, "none", sharded=True).kept is None
    monkeypatch.setattr(policy_module, "free_memory_bytes", lambda device: 4 * targets_bytes - 1)
    assert SVFPolicy(loaded, factors, "none").kept is None  # one copy would take over a quarter of what is free
