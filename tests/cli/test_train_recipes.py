"""recipes/train/*.yaml: one per bank expert (and arc-broad, which the bank does not ship), each a valid
--config whose settings are the ones the bundled expert records, with its data named by a pinned Hub URL
or data t2 builds (t2:math-mix/, t2:science-mix/)."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path

import pytest

from t2cli.experts.bundled import bundled_bank
from t2cli.experts.registry import Registry
from t2cli.training.config import load_config

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "train"
# recipe -> the bundled expert it reproduces (None: an expert the bank does not ship)
EXPERTS = {
    "arc.yaml": "arc@2",
    "arc-cloze.yaml": "arc@1",
    "math.yaml": "math@2",
    "cls.yaml": "cls@3",
    "probe.yaml": "probe@1",
    "arc-broad.yaml": None,
}
PINNED = re.compile(r"hf://datasets/[^/@]+/[^/@]+@[0-9a-f]{40}(/[^/,]+)?")


def test_every_recipe_is_listed() -> None:
    assert sorted(path.name for path in RECIPES.glob("*.yaml")) == sorted(EXPERTS)


@pytest.mark.parametrize("recipe", sorted(EXPERTS))
def test_a_recipe_holds_its_experts_settings_and_pinned_data(recipe: str) -> None:
    config = load_config(RECIPES / recipe)
    assert config.data is not None
    for source in (pair.partition("=")[2] or pair for pair in config.data.split(",")):
        assert PINNED.fullmatch(source) or source.startswith(("t2:math-mix/", "t2:science-mix/")), source
    if EXPERTS[recipe] is None:
        return
    bank = bundled_bank()
    assert bank is not None
    manifest = Registry(bank).resolve(EXPERTS[recipe], "smollm2-135m").manifest()
    recorded = dict(manifest.provenance["hyperparameters"])
    trained = {key: value for key, value in asdict(config).items() if key != "data" and key in recorded}
    assert trained == {key: recorded[key] for key in trained}
