"""The expert figure: heat map of mean |z − 1|, spectra of the most changed matrices, α of a mix."""

from __future__ import annotations

import math

import pytest
import torch

from t2cli.experts.compose import compose_recipe
from t2cli.experts.recipes import recipe_from_dict
from t2cli.experts.registry import Registry
from t2cli.plots.expert import plot_expert, z_heatmap
from tests.helpers import make_expert, publish_expert, tiny_model
from tests.plots.helpers import check_png


def test_heat_map_is_the_mean_distance_of_z_from_one_per_layer_and_role(tmp_path) -> None:
    expert = make_expert("arc", selection="all", seed=3)
    data = plot_expert(expert, tmp_path / "arc.png")
    check_png(tmp_path / "arc.png", 1000, 700)
    assert data.heatmap.roles == ("q", "k", "v", "o", "gate", "up", "down")
    assert data.heatmap.layers == (0, 1)
    assert data.heatmap.measure == "mean |z − 1|"
    for name, info in expert.manifest.targets.items():
        expected = sum(abs(float(v) - 1) for v in expert.z[name]) / info.rank
        cell = data.heatmap.values[data.heatmap.roles.index(info.role)][data.heatmap.layers.index(info.layer)]
        assert cell == pytest.approx(expected, rel=1e-9)
    assert data.mix == ()  # a trained expert has no α to draw


def test_spectra_are_the_most_changed_matrices_along_their_normalised_index(tmp_path) -> None:
    expert = make_expert("arc", selection="all", seed=4)
    data = plot_expert(expert, tmp_path / "arc.png")
    distance = {name: float((z.double() - 1).abs().mean()) for name, z in expert.z.items()}
    assert [s.name for s in data.spectra] == sorted(distance, key=lambda n: -distance[n])[:4]
    for spectrum in data.spectra:
        assert spectrum.z == tuple(expert.z[spectrum.name].double().tolist())
        assert spectrum.position[0] == 0 and spectrum.position[-1] == 1 and len(spectrum.position) == len(spectrum.z)
        assert spectrum.layer == expert.manifest.targets[spectrum.name].layer


def test_a_role_not_adapted_in_a_layer_is_an_empty_cell() -> None:
    expert = make_expert("arc", selection="mlp")
    targets = dict(expert.manifest.targets)
    dropped = next(name for name, info in targets.items() if info.layer == 1 and info.role == "up")
    del targets[dropped]
    heat = z_heatmap(targets, expert.z)
    assert math.isnan(heat.values[heat.roles.index("up")][1])
    assert not math.isnan(heat.values[heat.roles.index("up")][0])


@pytest.fixture
def bank(tmp_path) -> Registry:
    registry = Registry(tmp_path / "registry")
    loaded = tiny_model()
    publish_expert(registry, loaded, "arc", "arc", z=0.8, noise_seed=1)
    publish_expert(registry, loaded, "gsm8k", "gsm8k", z=1.2, noise_seed=2)
    return registry


def compose(bank: Registry, experts: list[dict], normalize: bool):
    recipe = recipe_from_dict({"experts": experts, "normalize": normalize, "output": "mix"})
    return bank.resolve(bank.publish(compose_recipe(recipe, bank)).spec).load()


def test_a_gradient_mix_draws_alpha_per_source_expert_and_layer(bank, tmp_path) -> None:
    mix = compose(bank, [{"name": "arc", "alpha": [1.0, 0.0]}, {"name": "gsm8k", "alpha": [0.0, 1.0]}], True)
    data = plot_expert(mix, tmp_path / "mix.png")
    check_png(tmp_path / "mix.png", 1000, 750)
    assert [(c.expert, c.roles, c.alpha) for c in data.mix] == [
        ("arc@1", ("gate", "up", "down"), (1.0, 0.0)),
        ("gsm8k@1", ("gate", "up", "down"), (0.0, 1.0)),
    ]
    assert not data.constant_mix


def test_per_role_alphas_split_an_experts_curve_and_scalars_draw_bars(bank, tmp_path) -> None:
    split = compose(bank, [{"name": "arc", "alpha": {"gate": 0.2, "default": 0.7}}, {"name": "gsm8k", "alpha": 0.3}], False)
    data = plot_expert(split, tmp_path / "split.png")
    assert [(c.expert, c.roles, c.alpha) for c in data.mix] == [
        ("arc@1", ("gate",), (0.2, 0.2)),
        ("arc@1", ("up", "down"), (0.7, 0.7)),
        ("gsm8k@1", ("gate", "up", "down"), (0.3, 0.3)),
    ]
    assert data.constant_mix  # drawn as bars: one per curve
    # The composed z is what the α say: z' = 0.2 z_arc + 0.3 z_gsm8k on a gate matrix.
    gate = next(name for name, info in split.manifest.targets.items() if info.role == "gate")
    arc, gsm8k = (bank.resolve(n).load().z[gate] for n in ("arc", "gsm8k"))
    assert torch.allclose(split.z[gate], 0.2 * arc + 0.3 * gsm8k)


def test_the_same_expert_draws_the_same_bytes(tmp_path) -> None:
    expert = make_expert("arc", seed=5)
    plot_expert(expert, tmp_path / "a.png")
    plot_expert(expert, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
