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


@pytest.mark.parametrize("route", ["side", "rebuilt"])
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
    with side_path.attached(model, changes, route):
        _loss(model(TOKENS).logits).backward()
    for name, delta in deltas.items():
        assert delta.grad.shape == (ranks[name],)
        assert torch.allclose(delta.grad, expected[name], rtol=0, atol=1e-10), name
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("route", ["side", "rebuilt"])
@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "qwen2"])
def test_z_equal_one_gives_the_base_outputs_bit_for_bit(model_type, route) -> None:
    model, factors = _fp64_model_and_factors(model_type)
    base = model(TOKENS).logits
    sides = side_path.attach(model, factors, {name: f.S.numel() for name, f in factors.items()})
    zero = {name: torch.zeros_like(f.S, requires_grad=True) for name, f in factors.items()}
    changes = {name: side_path.side_change(sides[name], zero[name], "none") for name in zero}
    with side_path.attached(model, changes, route):
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


@pytest.mark.parametrize("route", ["side", "rebuilt"])
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
    with side_path.attached(model, changes, route, recompute=list(model.model.layers)):
        loss = _loss(model(TOKENS).logits)
    loss.backward()  # the layers run again here, outside the block, with their adapted forwards
    for name, delta in deltas.items():
        assert torch.allclose(delta.grad, expected[name], rtol=0, atol=1e-10), name
    assert torch.equal(model(TOKENS).logits, base)
    assert all("forward" not in module.__dict__ for module in model.modules())
