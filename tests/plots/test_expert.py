"""The expert figure: heat map of mean |z − 1|, spectra of the most changed matrices, α of a mix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from t2cli.experts.compose import compose_recipe
from t2cli.experts.recipes import recipe_from_dict
from t2cli.experts.registry import Registry
from t2cli.plots.expert import SPECTRUM_BINS, mix_curves, plot_expert, z_heatmap
from tests.helpers import make_expert, publish_expert, tiny_model
from tests.plots.helpers import check_png


def test_heat_map_is_the_mean_distance_of_z_from_one_per_layer_and_role(tmp_path) -> None:
    expert = make_expert("arc", selection="all", seed=3)
    data = plot_expert(expert, tmp_path / "arc.png")
    check_png(tmp_path / "arc.png", 900, 650)
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
        z = expert.z[spectrum.name].double().numpy()
        runs = np.array_split(np.arange(len(z)), min(SPECTRUM_BINS, len(z)))
        assert spectrum.z == pytest.approx([z[run].mean() for run in runs], rel=1e-12)
        assert spectrum.position == pytest.approx([run.mean() / (len(z) - 1) for run in runs], rel=1e-12)
        assert spectrum.layer == expert.manifest.targets[spectrum.name].layer


def test_spectra_of_high_rank_matrices_are_run_means(tmp_path) -> None:
    expert = make_expert("arc", selection="mlp")
    name = next(iter(expert.z))
    expert.z[name] = torch.linspace(2, 0, 480)  # rank 480: 24 runs of 20, means fall from ~1.96 to ~0.04
    (spectrum,) = plot_expert(expert, tmp_path / "one.png").spectra[:1]
    assert spectrum.name == name and len(spectrum.z) == SPECTRUM_BINS
    assert spectrum.z[0] == pytest.approx(float(torch.linspace(2, 0, 480)[:20].mean()))
    assert spectrum.position[0] == pytest.approx(9.5 / 479) and spectrum.position[-1] == pytest.approx(469.5 / 479)


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
    check_png(tmp_path / "mix.png", 900, 700)
    assert [(c.expert, c.roles, c.alpha) for c in data.mix] == [
        ("arc@1", ("gate", "up", "down"), (1.0, 0.0)),
        ("gsm8k@1", ("gate", "up", "down"), (0.0, 1.0)),
    ]
    assert not data.constant_mix


def test_per_role_alphas_split_an_experts_curve_and_scalars_draw_bars(bank, tmp_path) -> None:
    experts = [{"name": "arc", "alpha": {"gate": 0.2, "default": 0.7}}, {"name": "gsm8k", "alpha": 0.3}]
    split = compose(bank, experts, False)
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


def test_a_searched_mix_with_one_alpha_per_layer_draws_those_alphas() -> None:
    expert = make_expert("arc", selection="all")
    recipe = {"experts": [{"name": "arc@1", "alpha": [0.25, 0.75]}, {"name": "gsm8k@2", "alpha": 0.5}]}
    curves = mix_curves(expert.manifest.targets, {"kind": "searched", "recipe": recipe})
    assert [(c.expert, c.roles, c.alpha) for c in curves] == [
        ("arc@1", ("q", "k", "v", "o", "gate", "up", "down"), (0.25, 0.75)),
        ("gsm8k@2", ("q", "k", "v", "o", "gate", "up", "down"), (0.5, 0.5)),
    ]
    assert mix_curves(expert.manifest.targets, {"kind": "trained", "recipe": recipe}) == ()
