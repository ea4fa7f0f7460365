"""`t2 compose` end to end on tiny models and a registry in a temp folder (`t2 transfer`: test_transfer.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.compose import compose_vectors
from t2cli.experts.recipes import parse_recipe
from t2cli.experts.registry import Registry
from t2cli.models.loading import LoadedModel
from tests.helpers import publish_random_expert, tiny_loaded

runner = CliRunner()


@pytest.fixture(scope="module")
def source() -> LoadedModel:
    return tiny_loaded("llama")


@pytest.fixture
def registry(tmp_path: Path, t2_home: Path) -> Registry:
    return Registry(tmp_path / "registry")


def t2(registry: Registry, *args: str) -> Result:
    return runner.invoke(app, [*args, "--registry", str(registry.root)])


def test_compose_terms_publish_the_weighted_sum(registry: Registry, source: LoadedModel) -> None:
    arc, gsm8k = publish_random_expert(registry, source, "arc", 1), publish_random_expert(registry, source, "gsm8k", 2)
    result = t2(registry, "compose", "arc=0.4", "gsm8k=0.6", "-o", "mix", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["ref"], summary["model_slug"], summary["matrices"]) == ("mix@1", "tiny-llama", 14)
    expert = registry.resolve("mix@1").load(source.fingerprint)
    for name, vector in expert.z.items():
        assert torch.equal(vector, 0.4 * arc.z[name] + 0.6 * gsm8k.z[name])
    recipe = {
        "base_model": "tiny-llama",
        "experts": [{"name": "arc@1", "alpha": 0.4}, {"name": "gsm8k@1", "alpha": 0.6}],
        "normalize": False,
        "output": "mix",
    }
    assert summary["recipe"] == recipe
    assert expert.manifest.provenance == {"kind": "composed", "recipe": recipe}
    assert expert.manifest.task is None  # inputs of different tasks
    table = t2(registry, "compose", "arc=1", "-o", "arc-copy")
    assert table.exit_code == 0 and "arc-copy@1" in table.stdout and "arc@1" in table.stdout


def test_single_expert_at_alpha_one_is_republished_bit_for_bit(registry: Registry, source: LoadedModel) -> None:
    arc = publish_random_expert(registry, source, "arc", 1, rule="nuclear")
    assert t2(registry, "compose", "arc@1=1", "-o", "same").exit_code == 0
    same = registry.resolve("same").load()
    assert all(torch.equal(same.z[name], arc.z[name]) for name in arc.z)
    assert (same.manifest.svf_rule, same.manifest.task) == ("nuclear", "arc")


def test_recipe_file_and_cli_form_publish_identical_experts(
    registry: Registry, source: LoadedModel, tmp_path: Path
) -> None:
    publish_random_expert(registry, source, "arc", 1), publish_random_expert(registry, source, "gsm8k", 2)
    path = tmp_path / "mix.yaml"
    path.write_text("experts:\n  - {name: arc, alpha: 3}\n  - {name: gsm8k, alpha: 1}\nnormalize: true\noutput: mix\n")
    assert t2(registry, "compose", "--recipe", str(path)).exit_code == 0
    assert t2(registry, "compose", "arc=3", "gsm8k=1", "--normalize", "-o", "mix").exit_code == 0
    from_file, from_cli = registry.resolve("mix@1").load(), registry.resolve("mix@2").load()
    assert from_file.manifest.provenance == from_cli.manifest.provenance
    assert all(torch.equal(from_file.z[name], from_cli.z[name]) for name in from_file.z)


def test_recipe_with_gradient_and_overrides(registry: Registry, source: LoadedModel, tmp_path: Path) -> None:
    arc, mbpp = publish_random_expert(registry, source, "arc", 1), publish_random_expert(registry, source, "mbpp", 2)
    path = tmp_path / "ramp.yaml"
    path.write_text(
        "base_model: tiny-llama\nexperts:\n  - {name: arc, alpha: [1.0, 0.0]}\n"
        "  - {name: mbpp@1, alpha: {mlp: [0.0, 1.0], attn: 0.5}}\noutput: ramp\n"
    )
    result = t2(registry, "compose", "-r", str(path), "-o", "ramp2", "--normalize", "--json")
    assert result.exit_code == 0, result.output
    stored = json.loads(result.stdout)["recipe"]
    assert (stored["output"], stored["normalize"]) == ("ramp2", True)
    recipe = parse_recipe(path)
    expected = compose_vectors([arc.z, mbpp.z], [e.alpha for e in recipe.experts], source.targets, normalize=True)
    composed = registry.resolve("ramp2").load().z
    assert all(torch.equal(composed[name], expected[name]) for name in expected)
    # Layer 0 is pure arc (mlp: α = (1, 0)); layer 1 attention is 0/(0 + 0.5) arc -> pure mbpp.
    assert torch.equal(composed["model.layers.0.mlp.up_proj.weight"], arc.z["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(
        composed["model.layers.1.self_attn.q_proj.weight"], mbpp.z["model.layers.1.self_attn.q_proj.weight"]
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["arc=0.5", "--recipe", "x.yaml", "-o", "x"], 2, "give NAME=ALPHA terms or --recipe FILE"),
        (["-o", "x"], 2, "give NAME=ALPHA terms or --recipe FILE"),
        (["arc=0.5"], 2, "needs a name; pass -o NAME"),
        (["arc=0.5", "gsm8k=-0.5", "--normalize", "-o", "zero"], 2, "α sums to 0 on model.layers.0"),
        (["arc=0.5", "attn=0.5", "-o", "x"], 2, r"arc@1 and attn@1 adapt different matrices"),
        (["arc=0.5", "nuc=0.5", "-o", "x"], 2, "uses SVF rule 'none' but nuc@1 uses 'nuclear'"),
        (["arc=0.5", "other=0.5", "-o", "x"], 4, "was made for model tiny-llama"),
        (["arc=0.5", "matz=0.5", "-o", "x"], 3, "expert 'matz' not found"),
        (["arc@4=1", "-o", "x"], 3, "arc@4 not found"),
        (["arc=0.5", "-o", "x", "--model", "gemma"], 3, "expert 'arc' not found"),
        (["arc=lots", "-o", "x"], 2, "α in 'arc=lots' is not a number"),
    ],
)
def test_compose_refusals(registry: Registry, source: LoadedModel, args: list[str], code: int, message: str) -> None:
    for name in ("arc", "gsm8k"):
        publish_random_expert(registry, source, name, 1)
    publish_random_expert(registry, source, "attn", 3, selection="attn")
    publish_random_expert(registry, source, "nuc", 4, rule="nuclear")
    other = tiny_loaded("llama", seed=5)
    publish_random_expert(registry, other, "other", 5)  # same model id, other weights
    result = t2(registry, "compose", *args)
    assert result.exit_code == code, result.output
    assert re.search(message, result.stderr), result.stderr
    assert registry.catalog()["tiny-llama"].keys() == {"arc", "gsm8k", "attn", "nuc", "other"}


def test_recipe_base_model_must_match(registry: Registry, source: LoadedModel, tmp_path: Path) -> None:
    publish_random_expert(registry, source, "arc", 1)
    path = tmp_path / "r.yaml"
    path.write_text("base_model: tiny-llama\nexperts: [{name: arc, alpha: 1}]\noutput: x\n")
    result = t2(registry, "compose", "-r", str(path), "--model", "smollm2-135m")
    assert result.exit_code == 2 and "differs from the recipe's base_model tiny-llama" in result.stderr
    path.write_text("base_model: org/Other\nexperts: [{name: arc, alpha: 1}]\noutput: x\n")
    result = t2(registry, "compose", "-r", str(path))
    assert result.exit_code == 3 and "expert 'arc' not found in" in result.stderr and "org--other" in result.stderr


BANK = tuple(enumerate(("arc", "math")))


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml")), ids=str)
def test_shipped_recipes_compose_bank_experts(registry: Registry, source: LoadedModel, path: Path) -> None:
    # Experts recorded as the default model's, so recipes that pin base_model resolve them.
    bank = {name: publish_random_expert(registry, source, name, seed, base_model="smollm2-135m") for seed, name in BANK}
    recipe = parse_recipe(path)
    assert {e.name for e in recipe.experts} <= bank.keys()
    result = t2(registry, "compose", "--recipe", str(path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["ref"], summary["model_slug"]) == (f"{recipe.output}@1", "smollm2-135m")
    composed = registry.resolve(summary["ref"]).load().z
    z_list = [bank[e.name].z for e in recipe.experts]
    expected = compose_vectors(z_list, [e.alpha for e in recipe.experts], source.targets, normalize=recipe.normalize)
    assert all(torch.equal(composed[name], expected[name]) for name in expected)
