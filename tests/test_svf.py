from __future__ import annotations

import pytest
import torch

from t2cli.errors import BadInputError
from t2cli.svd import decompose
from t2cli.svf import (
    Factors,
    LiveAdapter,
    adapted_spectrum,
    adapted_weight,
    identity,
    weight_delta,
)
from tests.helpers import tiny_loaded

TOKENS = torch.tensor([[1, 5, 9, 3, 7, 2], [4, 4, 8, 1, 0, 6]])


def random_z(factors, seed: int = 0, spread: float = 0.3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: 1 + spread * torch.randn(f.S.shape, generator=generator) for name, f in factors.items()}


@pytest.fixture(params=["llama", "mistral"])
def loaded_and_factors(request, t2_home):
    loaded = tiny_loaded(request.param)
    return loaded, decompose(loaded).factors


def test_identity_is_bit_exact_on_logits(loaded_and_factors) -> None:
    loaded, factors = loaded_and_factors
    base = loaded.model(TOKENS).logits
    adapter = LiveAdapter(loaded.model, factors)
    adapter.apply(identity(factors))
    assert torch.equal(loaded.model(TOKENS).logits, base)
    assert all(
        adapted_weight(p, factors[n], z) is p
        for n, p in loaded.model.named_parameters()
        if n in factors
        for z in [identity(factors)[n]]
    )


def test_random_z_matches_the_explicit_reconstruction(loaded_and_factors) -> None:
    loaded, factors = loaded_and_factors
    params = dict(loaded.model.named_parameters())
    z = random_z(factors)
    for name, f in factors.items():
        explicit = (f.U * (f.S * z[name])) @ f.Vh
        assert torch.allclose(adapted_weight(params[name], f, z[name]), explicit, atol=1e-5, rtol=1e-4)


def test_live_adapter_swaps_and_restores_exactly(loaded_and_factors) -> None:
    loaded, factors = loaded_and_factors
    base = loaded.model(TOKENS).logits
    adapter = LiveAdapter(loaded.model, factors)
    z = random_z(factors, spread=0.5)
    params = dict(loaded.model.named_parameters())
    weights = {name: adapted_weight(params[name], factors[name], z[name]) for name in z}
    adapter.apply(z)
    adapted = loaded.model(TOKENS).logits
    assert adapter.active and not torch.allclose(adapted, base)
    adapter.restore()
    assert not adapter.active
    assert torch.equal(loaded.model(TOKENS).logits, base)
    rebuilt = torch.func.functional_call(loaded.model, weights, args=(TOKENS,), strict=False, tie_weights=True)
    assert torch.allclose(rebuilt.logits, adapted, atol=1e-5)
    # Applying twice builds from the base, not from the previous expert.
    adapter.apply(z)
    adapter.apply(z)
    assert torch.allclose(loaded.model(TOKENS).logits, adapted, atol=1e-6)
    assert adapter.swaps == 4


def test_nuclear_rule_keeps_the_spectrum_sum() -> None:
    s = torch.tensor([4.0, 2.0, 1.0])
    z = torch.tensor([1.5, 0.5, 2.0])
    assert torch.allclose(adapted_spectrum(s, z, "nuclear").sum(), s.sum())
    assert torch.allclose(adapted_spectrum(s, z, "none"), s * z)


def test_bad_vectors_are_refused(loaded_and_factors) -> None:
    loaded, factors = loaded_and_factors
    adapter = LiveAdapter(loaded.model, factors)
    name = next(iter(factors))
    with pytest.raises(BadInputError, match="shape"):
        adapter.apply({name: torch.ones(3)})
    with pytest.raises(BadInputError, match="NaN or inf"):
        adapter.apply({name: torch.full_like(factors[name].S, float("nan"))})
    with pytest.raises(BadInputError, match="not a decomposed target"):
        adapter.apply({"model.embed_tokens.weight": torch.ones(3)})
    with pytest.raises(BadInputError, match="unknown SVF rule"):
        LiveAdapter(loaded.model, factors, rule="frobenius")


@pytest.mark.parametrize("rule", ["none", "nuclear"])
def test_adapted_weight_is_the_delta_form_in_the_weights_dtype(rule: str) -> None:
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(24, 16, generator=generator)
    U, S, Vh = torch.linalg.svd(weight, full_matrices=False)
    factors = Factors(U, S, Vh)
    z = 1 + 0.1 * torch.randn(16, generator=generator)
    assert torch.allclose(adapted_weight(weight, factors, z, rule), weight + weight_delta(factors, z, rule), atol=1e-6)
    # A bf16 weight gets a bf16 W'(z), built in fp32 (so z = 1 + tiny still moves it by rounding only).
    half = adapted_weight(weight.bfloat16(), factors, z, rule)
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), weight + weight_delta(factors, z, rule), atol=3e-2)
