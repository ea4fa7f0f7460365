from __future__ import annotations

import pytest
import torch

from t2cli.errors import BadInputError
from t2cli.experts.compose import alpha_for, at_depth, compose_vectors, resolve_alphas
from t2cli.experts.recipes import AlphaSpec, parse_recipe, recipe_from_cli, recipe_from_dict
from t2cli.targets import ALL_ROLES, TargetMatrix
from tests.helpers import tiny_loaded

RANKS = {"q": 8, "k": 4, "v": 4, "o": 8, "gate": 8, "up": 8, "down": 8}


def make_targets(num_layers: int) -> list[TargetMatrix]:
    """Llama-shaped targets without building a model."""
    return [
        TargetMatrix(f"model.layers.{layer}.{role}.weight", role, layer, (RANKS[role], 12))
        for layer in range(num_layers)
        for role in ALL_ROLES
    ]


def random_z(targets: list[TargetMatrix], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {t.name: 1 + 0.3 * torch.randn(t.rank, generator=generator) for t in targets}


def alpha(value: object) -> AlphaSpec:
    return recipe_from_dict({"experts": [{"name": "a", "alpha": value}]}).experts[0].alpha


@pytest.mark.parametrize("normalize", [False, True])
def test_single_expert_with_alpha_one_is_reproduced_bit_for_bit(normalize: bool) -> None:
    loaded = tiny_loaded("llama")
    z = random_z(loaded.targets, seed=1)
    composed = compose_vectors([z], [alpha(1.0)], loaded.targets, normalize=normalize)
    assert composed.keys() == z.keys()
    assert all(torch.equal(composed[name], z[name]) for name in z)


def test_normalize_turns_any_single_alpha_into_the_identity_mix() -> None:
    targets = make_targets(3)
    z = random_z(targets, seed=2)
    composed = compose_vectors([z], [alpha(0.37)], targets, normalize=True)
    assert all(torch.equal(composed[name], z[name]) for name in z)


def test_composition_is_the_weighted_sum_exactly() -> None:
    targets = make_targets(2)
    z1, z2 = random_z(targets, 1), random_z(targets, 2)
    composed = compose_vectors([z1, z2], [alpha(0.3), alpha(-0.8)], targets)
    for name in z1:
        assert torch.equal(composed[name], 0.3 * z1[name] + -0.8 * z2[name])


def test_composition_is_linear_in_z() -> None:
    targets = make_targets(2)
    x, y, w = random_z(targets, 1), random_z(targets, 2), random_z(targets, 3)
    mixed = {name: 2.0 * x[name] + 0.5 * y[name] for name in x}
    specs = [alpha([0.2, 0.9]), alpha({"mlp": 0.4, "attn": 1.5})]
    left = compose_vectors([mixed, w], specs, targets)
    right_x = compose_vectors([x, w], specs, targets)
    right_y = compose_vectors([y, w], specs, targets)
    only_w = compose_vectors([w], specs[1:], targets)
    for name in x:
        expected = 2.0 * right_x[name] + 0.5 * right_y[name] - 1.5 * only_w[name]
        assert torch.allclose(left[name], expected, atol=1e-5)


def test_gradient_gives_each_layer_its_share_of_the_ramp() -> None:
    targets = make_targets(5)
    ones = {t.name: torch.ones(t.rank) for t in targets}
    composed = compose_vectors([ones], [alpha([0.2, 1.0])], targets)
    per_layer = [float(composed[f"model.layers.{layer}.q.weight"][0]) for layer in range(5)]
    assert per_layer == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    # The first and last layers land on the anchors themselves.
    assert at_depth((0.2, 1.0), 0, 5) == 0.2 and at_depth((0.2, 1.0), 4, 5) == 1.0


def test_longer_gradients_are_piecewise_linear_anchors_over_depth() -> None:
    assert [at_depth((0.0, 1.0, 0.0), layer, 5) for layer in range(5)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert [at_depth((1.0, 3.0, 2.0, 6.0), layer, 7) for layer in range(7)] == [1.0, 2.0, 3.0, 2.5, 2.0, 4.0, 6.0]
    # Equal anchors give their value exactly at every layer in between.
    assert {at_depth((0.1, 0.1), layer, 30) for layer in range(30)} == {0.1}
    assert at_depth((0.3, 0.9), 0, 1) == 0.3


def test_layer_outside_the_model_is_refused() -> None:
    with pytest.raises(BadInputError, match="layer 5 is outside a model of 5 layers"):
        at_depth((0.0, 1.0), 5, 5)


def test_per_role_overrides_reach_the_right_matrices() -> None:
    targets = make_targets(3)
    spec = alpha({"q": 0.1, "attn": [0.0, 1.0], "default": 0.7})
    expected = {"q": 0.1, "k": 0.5, "v": 0.5, "o": 0.5, "gate": 0.7, "up": 0.7, "down": 0.7}
    assert {t.role: alpha_for(t, spec, 3) for t in targets if t.layer == 1} == expected
    assert alpha_for(targets[1], spec, 3) == 0.0  # k in layer 0: start of the attention ramp


def test_normalize_is_per_matrix_after_gradients_and_roles() -> None:
    targets = make_targets(3)
    weights = resolve_alphas([alpha([1.0, 3.0]), alpha({"mlp": 1.0, "attn": 3.0})], targets, normalize=True)
    assert weights["model.layers.0.q.weight"] == (0.25, 0.75)
    assert weights["model.layers.1.q.weight"] == (0.4, 0.6)
    assert weights["model.layers.2.down.weight"] == (0.75, 0.25)
    assert all(sum(pair) == pytest.approx(1.0) for pair in weights.values())


def test_normalize_refuses_alpha_summing_to_zero_naming_the_matrix() -> None:
    targets = make_targets(3)
    specs = [alpha([1.0, -1.0]), alpha(0.0)]
    with pytest.raises(BadInputError, match=r"α sums to 0 on model.layers.1.q.weight, .*drop normalize"):
        resolve_alphas(specs, targets, normalize=True)
    assert resolve_alphas(specs, targets)["model.layers.1.q.weight"] == (0.0, 0.0)


def test_recipe_file_and_cli_forms_compose_identical_z() -> None:
    targets = make_targets(2)
    z = [random_z(targets, 1), random_z(targets, 2)]
    from_file = parse_recipe("experts: [{name: math, alpha: 0.4}, {name: arc, alpha: 0.6}]\nnormalize: true\n")
    from_cli = recipe_from_cli(["math=0.4", "arc=0.6"], normalize=True)
    first = compose_vectors(z, [e.alpha for e in from_file.experts], targets, normalize=from_file.normalize)
    second = compose_vectors(z, [e.alpha for e in from_cli.experts], targets, normalize=from_cli.normalize)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_manifest_style_targets_give_the_same_result() -> None:
    targets = make_targets(2)
    z = [random_z(targets, 1), random_z(targets, 2)]
    specs = [alpha([0.1, 0.5]), alpha(0.5)]
    by_name = {t.name: t for t in targets}
    first, second = compose_vectors(z, specs, targets), compose_vectors(z, specs, by_name)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_inputs_must_cover_the_same_matrices() -> None:
    targets = make_targets(2)
    z1, z2 = random_z(targets, 1), random_z(targets, 2)
    missing = {name: v for name, v in z2.items() if name != "model.layers.1.up.weight"}
    with pytest.raises(BadInputError, match="input 2 has no z for model.layers.1.up.weight"):
        compose_vectors([z1, missing], [alpha(0.5), alpha(0.5)], targets)
    short = {**z2, "model.layers.0.k.weight": torch.ones(3)}
    with pytest.raises(BadInputError, match=r"input 2 has z of shape \(3,\) for model.layers.0.k.weight"):
        compose_vectors([z1, short], [alpha(0.5), alpha(0.5)], targets)
    extra = {**z1, "lm_head.weight": torch.ones(4)}
    with pytest.raises(BadInputError, match="input 1 adapts lm_head.weight, which the targets lack"):
        compose_vectors([extra, z2], [alpha(0.5), alpha(0.5)], targets)
    with pytest.raises(BadInputError, match="got 2 z inputs and 1 α"):
        compose_vectors([z1, z2], [alpha(1.0)], targets)
    with pytest.raises(BadInputError, match="got 0 z inputs"):
        compose_vectors([], [], targets)
