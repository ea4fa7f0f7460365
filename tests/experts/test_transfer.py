from __future__ import annotations

import json

import pytest
import torch
import yaml

from t2cli.errors import BadInputError
from t2cli.experts.transfer import layer_sources, resample, transfer_vectors
from t2cli.models.matching import select_targets
from tests.helpers import tiny_loaded

# 2 layers, hidden 32 (ranks q/o/gate/up/down 32, k/v 16) -> 3 layers, hidden 48 (ranks 48 and 24).
BIG = dict(hidden_size=48, intermediate_size=72, num_hidden_layers=3)


@pytest.fixture(scope="module")
def small() -> list:
    return tiny_loaded("llama").targets


@pytest.fixture(scope="module")
def big() -> list:
    return tiny_loaded("qwen2", **BIG).targets


def random_z(targets: list, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {t.name: 1 + 0.3 * torch.randn(t.rank, generator=generator) for t in targets}


def ramp(rank: int, start: float = 0.5, span: float = 1.0) -> torch.Tensor:
    return start + span * torch.arange(rank, dtype=torch.float64) / (rank - 1)


def test_same_shape_same_depth_transfer_is_an_exact_copy(small: list) -> None:
    target = tiny_loaded("mistral", num_hidden_layers=2).targets
    z = random_z(small)
    result = transfer_vectors(z, small, target)
    assert result.z.keys() == {t.name for t in target}
    assert all(torch.equal(result.z[t.name], z[s.name]) for s, t in zip(small, target, strict=True))
    assert {m.method for m in result.matrices} == {"copy"}
    assert result.matrices[0].sources == ((small[0].name, 1.0),)


def test_constant_z_is_preserved_exactly_across_shapes(small: list, big: list) -> None:
    z = {t.name: torch.full((t.rank,), 1.25) for t in small}
    result = transfer_vectors(z, small, big)
    assert result.z.keys() == {t.name for t in big}
    for target in big:
        vector = result.z[target.name]
        assert vector.dtype == torch.float32 and vector.shape == (target.rank,)
        assert torch.equal(vector, torch.full((target.rank,), 1.25))
    assert {m.method for m in result.matrices} == {"resample"}


def test_per_layer_constants_interpolate_over_relative_depth(small: list, big: list) -> None:
    z = {t.name: torch.full((t.rank,), 1.0 + t.layer) for t in small}  # layer 0: 1.0, layer 1: 2.0
    result = transfer_vectors(z, small, big)
    for target in big:
        assert torch.equal(result.z[target.name], torch.full((target.rank,), [1.0, 1.5, 2.0][target.layer]))


@pytest.mark.parametrize("direction", ["up", "down"])
def test_linear_ramp_over_the_spectrum_is_preserved(small: list, big: list, direction: str) -> None:
    source, target = (small, big) if direction == "up" else (big, small)
    z = {t.name: ramp(t.rank).float() for t in source}
    result = transfer_vectors(z, source, target)
    for t in target:
        assert torch.allclose(result.z[t.name].double(), ramp(t.rank), atol=1e-5, rtol=0)


def test_strength_scales_the_deviation_from_identity(small: list, big: list) -> None:
    z = random_z(small, seed=3)
    full = transfer_vectors(z, small, big)
    half = transfer_vectors(z, small, big, strength=0.5)
    off = transfer_vectors(z, small, big, strength=0.0)
    for t in big:
        assert torch.allclose(half.z[t.name], 1 + 0.5 * (full.z[t.name] - 1), atol=1e-6)
        assert torch.equal(off.z[t.name], torch.ones(t.rank))
    assert half.strength == 0.5


def test_layer_mapping_by_relative_depth() -> None:
    assert layer_sources(1, 2, 3) == ((0, 0.5), (1, 0.5))
    assert [layer_sources(j, 4, 4) for j in range(4)] == [((j, 1.0),) for j in range(4)]
    # SmolLM2 (30 layers) -> Gemma-3-270M (18): the ends map to the ends, the rest interpolate.
    assert layer_sources(0, 30, 18) == ((0, 1.0),)
    assert layer_sources(17, 30, 18) == ((29, 1.0),)
    (low, w_low), (high, w_high) = layer_sources(5, 30, 18)
    assert (low, high) == (8, 9) and w_low + w_high == pytest.approx(1.0)
    assert 8 * w_low + 9 * w_high == pytest.approx(5 * 29 / 17)
    assert layer_sources(0, 5, 1) == ((0, 1.0),)
    assert layer_sources(2, 1, 3) == ((0, 1.0),)


def test_resample_keeps_both_ends_of_the_spectrum() -> None:
    z = torch.tensor([3.0, 1.0, 2.0, 0.5])
    for rank in (2, 3, 7, 100):
        out = resample(z, rank)
        assert out.shape == (rank,) and out[0] == 3.0 and out[-1] == 0.5
    assert torch.equal(resample(z, 7)[[0, 2, 4, 6]], z.double())  # 7 points hit every source point
    assert torch.equal(resample(torch.tensor([2.0]), 3), torch.full((3,), 2.0, dtype=torch.float64))
    assert torch.equal(resample(z, 1), torch.tensor([3.0], dtype=torch.float64))


def test_mapping_records_every_matrix_and_serialises(small: list, big: list) -> None:
    mapping = transfer_vectors(random_z(small), small, big, strength=0.8).mapping()
    assert json.loads(json.dumps(mapping)) == yaml.safe_load(yaml.safe_dump(mapping)) == mapping
    assert (mapping["source_layers"], mapping["target_layers"]) == (2, 3)
    assert mapping["ranks"]["k"] == {"source": 16, "target": 24}
    assert len(mapping["matrices"]) == len(big)
    middle_q = next(m for m in mapping["matrices"] if m["target"] == "model.layers.1.self_attn.q_proj.weight")
    assert middle_q == {
        "target": "model.layers.1.self_attn.q_proj.weight",
        "method": "resample",
        "sources": {"model.layers.0.self_attn.q_proj.weight": 0.5, "model.layers.1.self_attn.q_proj.weight": 0.5},
    }


def test_role_missing_from_the_target_selection_is_refused(small: list, big: list) -> None:
    with pytest.raises(BadInputError, match=r"adapts role\(s\) gate,up,down but the target selection has none"):
        transfer_vectors(random_z(small), small, select_targets(big, "attn"))


def test_roles_the_expert_lacks_stay_at_identity_and_are_recorded(small: list, big: list) -> None:
    source = select_targets(small, "mlp")
    result = transfer_vectors(random_z(source), source, big)
    assert result.identity_roles == ("q", "k", "v", "o")
    for t, m in zip(big, result.matrices, strict=True):
        assert m.target == t.name
        if t.role in ("q", "k", "v", "o"):
            assert m.method == "identity" and m.sources == ()
            assert torch.equal(result.z[t.name], torch.ones(t.rank))
        else:
            assert m.method == "resample"
    assert result.mapping()["identity_roles"] == ["q", "k", "v", "o"]


def test_inconsistent_inputs_are_refused(small: list, big: list) -> None:
    z = random_z(small)
    with pytest.raises(BadInputError, match="strength must be a finite number"):
        transfer_vectors(z, small, big, strength=float("nan"))
    del z["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(BadInputError, match="no z of length 32 for model.layers.1.mlp.up_proj.weight"):
        transfer_vectors(z, small, big)
    gapped = [t for t in small if not (t.role == "q" and t.layer == 0)]
    with pytest.raises(BadInputError, match="no q matrix in layer 0"):
        transfer_vectors(random_z(gapped), gapped, big)
