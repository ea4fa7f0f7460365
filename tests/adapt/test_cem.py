"""CEM on synthetic objectives, and the few-shot α search that saves (and reuses) a searched expert."""

from __future__ import annotations

import pytest
import torch

from t2cli.adapt.cem import CemConfig, cem_search
from t2cli.adapt.fewshot import SearchConfig, alpha_values, few_shot_expert, make_recipe
from t2cli.adapt.prepare import StrategyOptions, make_router
from t2cli.adapt.routers import FixedRouter
from t2cli.adapt.shots import file_shot_set, load_shots
from t2cli.engines.slot import ExpertSlot
from t2cli.errors import BadInputError
from t2cli.experts.recipes import recipe_from_dict
from t2cli.experts.registry import Registry
from t2cli.fsutil import file_sha256
from t2cli.tasks.registry import get_task
from tests.helpers import FakeEngine, publish_expert, tiny_model, write_shots

BEST = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)


def quadratic(alpha: torch.Tensor) -> tuple[float]:
    return (-float((alpha - BEST).pow(2).sum()),)


def test_cem_finds_the_known_best_alpha() -> None:
    config = CemConfig(population=24, elites=6, iterations=12, seed=0, init_std=0.5)
    result = cem_search(quadratic, torch.full((3,), 1 / 3), config)
    assert torch.allclose(result.best, BEST, atol=0.01)
    assert result.evaluations == 24 * 12 and len(result.curve) == 12
    # The incumbent is scored again each iteration, so the best score never drops.
    assert all(later >= earlier for earlier, later in zip(result.curve, result.curve[1:], strict=False))


def test_cem_is_seeded() -> None:
    config = CemConfig(population=6, elites=2, iterations=3, seed=5)
    first = cem_search(quadratic, torch.zeros(3), config)
    again = cem_search(quadratic, torch.zeros(3), config)
    other = cem_search(quadratic, torch.zeros(3), CemConfig(population=6, elites=2, iterations=3, seed=6))
    assert torch.equal(first.best, again.best) and first.curve == again.curve
    assert not torch.equal(first.best, other.best)


def test_cem_breaks_ties_with_the_second_score() -> None:
    # The first score is flat (a reward that no candidate changes); the second one leads to BEST.
    config = CemConfig(population=24, elites=6, iterations=12, seed=0, init_std=0.5)
    result = cem_search(lambda a: (0.0, *quadratic(a)), torch.full((3,), 1 / 3), config)
    assert torch.allclose(result.best, BEST, atol=0.01)


def test_cem_searches_matrices_too() -> None:
    target = torch.tensor([[0.1, 0.9], [0.6, 0.4]], dtype=torch.float64)
    config = CemConfig(population=24, elites=6, iterations=15, seed=1, init_std=0.5)
    result = cem_search(lambda a: (-float((a - target).pow(2).sum()),), torch.full((2, 2), 0.5), config)
    assert result.best.shape == (2, 2) and torch.allclose(result.best, target, atol=0.05)


@pytest.mark.parametrize(
    "options", [dict(population=1), dict(population=4, elites=5), dict(iterations=0), dict(init_std=0.0)]
)
def test_bad_cem_settings_are_refused(options) -> None:
    with pytest.raises(BadInputError, match="CEM"):
        CemConfig(**options)


# ---- few-shot search -----------------------------------------------------------------------------


@pytest.fixture
def setup(tmp_path):
    loaded = tiny_model()
    registry = Registry(tmp_path / "registry")
    refs = [
        publish_expert(registry, loaded, "up", "gsm8k", z=1.0, noise_seed=1),
        publish_expert(registry, loaded, "down", "arc", z=0.0, noise_seed=2),
    ]
    return loaded, registry, refs, write_shots(tmp_path / "shots.jsonl")


def steered_engine(refs, loaded, alpha_up: float) -> FakeEngine:
    """An engine whose likelihood peaks at z' = α·z_up + (1 − α)·z_down."""
    up, down = (ref.load().z for ref in refs)
    target = {name: alpha_up * up[name] + (1 - alpha_up) * down[name] for name in up}
    return FakeEngine(target=target)


def test_load_shots_reads_three_to_twenty_examples_of_the_task(tmp_path) -> None:
    task = get_task("gsm8k")
    shots = load_shots(task, write_shots(tmp_path / "ok.jsonl", 3))
    assert [e.reference for e in shots] == ["0", "2", "4"]
    with pytest.raises(BadInputError, match="has 2 examples; few-shot adaptation takes 3 to 20"):
        load_shots(task, write_shots(tmp_path / "few.jsonl", 2))
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n' * 3)
    with pytest.raises(BadInputError, match=r"bad.jsonl:1: not a valid gsm8k record \(missing field 'answer'\)"):
        load_shots(task, tmp_path / "bad.jsonl")


def test_layer_alpha_is_a_depth_gradient_with_one_anchor_per_layer(setup) -> None:
    _, _, refs, _ = setup
    experts = [ref.load() for ref in refs]
    alpha = torch.tensor([[0.25, 0.75], [0.5, 1.0]], dtype=torch.float64)
    assert alpha_values(alpha) == [[0.25, 0.75], [0.5, 1.0]]
    recipe = make_recipe(experts, alpha)
    assert [e.ref for e in recipe.experts] == ["up@1", "down@1"]
    assert recipe.experts[0].alpha.for_role("up") == (0.25, 0.75)


@pytest.mark.parametrize("granularity", ["expert", "layer"])
def test_few_shot_search_finds_the_mix_saves_it_and_reuses_it(setup, granularity) -> None:
    loaded, registry, refs, shots = setup
    engine = steered_engine(refs, loaded, alpha_up=0.7)
    slot = ExpertSlot(engine, registry, loaded)
    cem = CemConfig(population=20, elites=5, iterations=15, seed=0, init_std=0.4)
    config = SearchConfig(granularity=granularity, score="likelihood", cem=cem)
    ref, searched = few_shot_expert(registry, slot, loaded.chat, refs, file_shot_set(get_task("gsm8k"), shots), config)
    assert searched and ref.spec == "gsm8k-fewshot@1"
    assert engine.generated == []  # likelihood scoring generates nothing
    manifest = ref.manifest()
    provenance = manifest.provenance
    assert provenance["kind"] == "searched" and manifest.task == "gsm8k"
    assert provenance["shots_sha256"] == file_sha256(shots) and provenance["bank"] == ["up@1", "down@1"]
    assert provenance["granularity"] == granularity and len(provenance["curve"]) == 15
    values = [torch.tensor(entry["alpha"], dtype=torch.float64) for entry in provenance["recipe"]["experts"]]
    assert all(torch.allclose(v, torch.full_like(v, a), atol=0.03) for v, a in zip(values, (0.7, 0.3), strict=True))
    # The saved z is the recipe's mix: on a layer-0 matrix, the first α of each expert.
    saved = ref.load()
    up, down = (r.load().z for r in refs)
    name = "model.layers.0.mlp.up_proj.weight"
    first = [float(v.reshape(-1)[0]) for v in values]
    assert torch.allclose(saved.z[name], first[0] * up[name] + first[1] * down[name])

    again = FakeEngine()
    found, searched = few_shot_expert(
        registry,
        ExpertSlot(again, registry, loaded),
        loaded.chat,
        refs,
        file_shot_set(get_task("gsm8k"), shots),
        config,
    )
    assert (found, searched) == (ref, False) and again.set_calls == []


def test_reward_search_generates_and_force_searches_again(setup) -> None:
    loaded, registry, refs, shots = setup
    engine = steered_engine(refs, loaded, alpha_up=0.7)
    config = SearchConfig(cem=CemConfig(population=3, elites=1, iterations=2, seed=0), max_new_tokens=8)
    slot = ExpertSlot(engine, registry, loaded)
    first, _ = few_shot_expert(registry, slot, loaded.chat, refs, file_shot_set(get_task("gsm8k"), shots), config)
    assert engine.generate_calls == 6 and len(engine.generated) == 6 * 3  # every candidate answers every shot
    assert set(first.manifest().metrics) == {"shots_score", "shots_loglik"}
    second, searched = few_shot_expert(
        registry, slot, loaded.chat, refs, file_shot_set(get_task("gsm8k"), shots), config, force=True, name="mine"
    )
    assert searched and second.spec == "mine@1"
    assert slot.swaps == 12 and slot.current not in (None, first.spec)


def test_few_shot_router_decides_the_saved_mix_for_every_prompt(setup) -> None:
    loaded, registry, refs, shots = setup
    engine = steered_engine(refs, loaded, alpha_up=0.7)
    options = StrategyOptions(task="gsm8k", shots=shots, cem_score="likelihood", cem_iterations=2)
    router = make_router("few-shot", ExpertSlot(engine, registry, loaded), loaded, registry, options)
    assert isinstance(router, FixedRouter) and router.note.startswith("searched α and saved gsm8k-fewshot@1")
    [decision] = router.decide(["what is 3 plus 3?"])
    recipe = recipe_from_dict(registry.resolve("gsm8k-fewshot").manifest().provenance["recipe"])
    assert decision.expert == "gsm8k-fewshot@1" and decision.label == "gsm8k"
    assert decision.alpha == {e.ref: e.alpha.for_role("q") for e in recipe.experts}
    reused = make_router("few-shot", ExpertSlot(FakeEngine(), registry, loaded), loaded, registry, options)
    assert reused.decision == decision and reused.note.startswith("reused gsm8k-fewshot@1")


def test_mixing_needs_two_compatible_experts(setup) -> None:
    loaded, registry, refs, shots = setup
    slot = ExpertSlot(FakeEngine(), registry, loaded)
    with pytest.raises(BadInputError, match="mixes at least two experts, the bank has 1"):
        few_shot_expert(registry, slot, loaded.chat, refs[:1], file_shot_set(get_task("gsm8k"), shots), SearchConfig())
