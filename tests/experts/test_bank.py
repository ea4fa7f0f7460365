"""The bundled bank (registry/): what its manifests claim held out, and that the README reports the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2cli.experts.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
BANK = Registry(ROOT / "registry")
# The experts `t2 run` routes to, each with its held-out result in generation (what `t2 run` does).
GENERATION_EXPERTS = ("arc@2", "math@2")


@pytest.mark.parametrize("spec", GENERATION_EXPERTS)
def test_routed_experts_beat_the_base_held_out_by_more_than_two_se(spec: str) -> None:
    metrics = BANK.resolve(spec, "smollm2-135m").manifest().metrics
    gain = metrics["heldout_score"] - metrics["heldout_base_score"]
    assert metrics["heldout_n"] >= 150 and gain > 2 * metrics["heldout_paired_diff_se"]


@pytest.mark.parametrize("spec", GENERATION_EXPERTS)
def test_the_readme_reports_the_manifests_figures(spec: str) -> None:
    metrics = BANK.resolve(spec, "smollm2-135m").manifest().metrics
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    expected = f"{metrics['heldout_base_score']:.3f} to {metrics['heldout_score']:.3f}"
    assert expected in readme, f"README does not report {spec}'s held-out {expected}"
    assert f"± {metrics['heldout_paired_diff_se']:.3f}" in readme, f"README lacks {spec}'s standard error"


def test_every_bank_manifest_names_its_data_without_a_machine_path() -> None:
    specs = [f"{s.name}@{v}" for s in BANK.list("smollm2-135m") for v in s.versions]
    assert "arc@1" in specs and "cls@2" in specs
    for spec in specs:
        provenance = BANK.resolve(spec, "smollm2-135m").manifest().provenance
        data = provenance.get("data")
        if provenance["kind"] == "trained" and spec != "cls@1":  # cls@1: built from its experts' data (None)
            assert isinstance(data, dict) and set(data) == {"name", "revision", "sha256"}, spec
            assert data["name"] is None or "/" not in data["name"], spec


def test_the_likelihood_only_arc_expert_says_so() -> None:
    assert "no gain in generation" in BANK.resolve("arc@1", "smollm2-135m").manifest().description


def test_the_default_classifier_routes_nine_in_ten_of_every_category_held_out() -> None:
    manifest = BANK.resolve("cls", "smollm2-135m").manifest()  # the latest version: what --adapt classifier uses
    categories = [name for name, _ in manifest.provenance["categories"]]
    assert {"arc", "math", "other"} <= set(categories)
    assert manifest.metrics["heldout_n"] >= 150
    assert all(manifest.metrics[f"heldout_{name}"] >= 0.9 for name in categories)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"{manifest.metrics['heldout_score']:.3f}" in readme, "README does not report the classifier's routing"
