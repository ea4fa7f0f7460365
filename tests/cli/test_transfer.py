"""`t2 transfer` end to end on tiny checkpoint folders and a registry in a temp folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.registry import Registry
from t2cli.experts.transfer import transfer_vectors
from t2cli.models.loading import LoadedModel, load_model, slugify
from tests.helpers import build_tiny_model, publish_random_expert, tiny_tokenizer

runner = CliRunner()


def save_model(folder: Path, model_type: str, seed: int = 7, **overrides: object) -> Path:
    build_tiny_model(model_type, seed=seed, **overrides).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The source (tiny-llama), a same-shape model with other weights, and a 3-layer, hidden-48 Qwen2."""
    root = tmp_path_factory.mktemp("models")
    return {
        "source": save_model(root / "tiny-llama", "llama", seed=0),
        "other": save_model(root / "tiny-llama-other", "llama", seed=5),
        "bigger": save_model(root / "tiny-qwen-48", "qwen2", hidden_size=48, intermediate_size=72, num_hidden_layers=3),
    }


@pytest.fixture(scope="module")
def source(folders: dict[str, Path]) -> LoadedModel:
    return load_model(str(folders["source"]))


@pytest.fixture
def registry(tmp_path: Path, t2_home: Path) -> Registry:
    return Registry(tmp_path / "registry")


def t2(registry: Registry, *args: str) -> Result:
    return runner.invoke(app, [*args, "--registry", str(registry.root)])


def test_transfer_to_another_shape_and_depth_needs_force(
    registry: Registry, source: LoadedModel, folders: dict[str, Path]
) -> None:
    bigger, src = str(folders["bigger"]), str(folders["source"])
    arc = publish_random_expert(registry, source, "arc", 1, selection="mlp")
    refused = t2(registry, "transfer", "arc", "--from", src, "--to", bigger, "--strength", "0.5")
    assert refused.exit_code == 4 and "unrelated" in refused.stderr and "--force" in refused.stderr
    assert "alignment of arc@1" in refused.stdout and "unrelated" in refused.stdout  # printed before the refusal
    assert list(registry.catalog()) == ["tiny-llama"]
    result = t2(registry, "transfer", "arc", "--from", src, "--to", bigger, "--strength", "0.5", "--force", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    target = load_model(bigger)
    assert (summary["ref"], summary["model_slug"], summary["mapping"]) == (
        "arc@1",
        slugify(target.model_id),
        "position",
    )
    assert summary["source"] == {"expert": "arc@1", "model": "tiny-llama", "fingerprint": source.fingerprint}
    assert summary["layers"] == {"source": 2, "target": 3}
    assert summary["methods"] == {"resample": 9} and summary["identity_roles"] == []
    assert summary["alignment"]["verdict"] == "unrelated" and summary["alignment"]["forced"] is True
    published = registry.resolve("arc", summary["model_slug"]).load(target.fingerprint)
    expected = transfer_vectors(arc.z, source.select("mlp"), target.select("mlp"), strength=0.5)
    assert all(torch.equal(published.z[name], expected.z[name]) for name in expected.z)
    provenance = published.manifest.provenance
    assert provenance["mapping"] == expected.mapping() and provenance["alignment"] == summary["alignment"]
    # The name now exists for two models: the source must be named.
    again = t2(registry, "transfer", "arc", "--to", bigger, "--force")
    assert again.exit_code == 2 and "pass --model" in again.stderr
    aligned = t2(registry, "transfer", "arc", "-m", src, "--to", bigger, "--mapping", "aligned", "--force", "-o", "v")
    assert aligned.exit_code == 2 and "--mapping position" in aligned.stderr


def test_check_prints_the_report_and_writes_nothing(
    registry: Registry, source: LoadedModel, folders: dict[str, Path]
) -> None:
    publish_random_expert(registry, source, "arc", 1)
    result = t2(registry, "transfer", "arc", "--from", str(folders["source"]), "--to", str(folders["other"]), "--check")
    assert result.exit_code == 0, result.output
    assert "alignment of arc@1" in result.stdout and "cosine top-16" in result.stdout
    as_json = t2(
        registry,
        "transfer",
        "arc",
        "--from",
        str(folders["source"]),
        "--to",
        str(folders["other"]),
        "--check",
        "--json",
    )
    report = json.loads(as_json.stdout)["check"]["arc@1"]
    assert report["same_shapes"] and report["verdict"] != "aligned" and report["energy"] < 0.5
    assert set(report["roles"]) == {"q", "k", "v", "o", "gate", "up", "down"}
    assert list(registry.catalog()) == ["tiny-llama"]


@pytest.mark.parametrize("mapping", ["position", "aligned"])
def test_transfer_onto_the_same_weights_is_exact(
    registry: Registry, source: LoadedModel, folders: dict[str, Path], tmp_path: Path, mapping: str
) -> None:
    copy = save_model(tmp_path / "tiny-llama-copy", "llama", seed=0)
    arc = publish_random_expert(registry, source, "arc", 1)
    result = t2(
        registry, "transfer", "arc@1", "--to", str(copy), "--from", str(folders["source"]), "--mapping", mapping
    )
    assert result.exit_code == 0, result.output
    published = registry.resolve("arc", "tiny-llama-copy").load()
    assert all(torch.equal(published.z[name], arc.z[name]) for name in arc.z)
    assert published.manifest.provenance["alignment"]["identical"] is True


def test_all_rebases_the_bank_classifier_included(
    registry: Registry, source: LoadedModel, folders: dict[str, Path], tmp_path: Path
) -> None:
    copy = save_model(tmp_path / "tiny-llama-v2", "llama", seed=0)
    categories = [["arc", "science questions"], ["math", "word problems"]]
    for seed, name in enumerate(("arc", "math")):
        publish_random_expert(registry, source, name, seed)
    publish_random_expert(registry, source, "cls", 3, categories=categories)
    publish_random_expert(registry, source, "arc", 9)  # arc@2: the latest version moves
    result = t2(registry, "transfer", "--all", "--from", str(folders["source"]), "--to", str(copy), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    moved = {s["source"]["expert"]: s["ref"] for s in summary["experts"]}
    assert moved == {"arc@2": "arc@1", "cls@1": "cls@1", "math@1": "math@1"}
    assert registry.catalog()["tiny-llama-v2"] == {"arc": [1], "cls": [1], "math": [1]}
    classifier = registry.resolve("cls", "tiny-llama-v2").manifest()
    assert classifier.provenance["categories"] == categories  # it routes over the same labels, in order


def test_all_with_one_unrelated_target_publishes_nothing(
    registry: Registry, source: LoadedModel, folders: dict[str, Path]
) -> None:
    for seed, name in enumerate(("arc", "cls")):
        publish_random_expert(registry, source, name, seed)
    result = t2(registry, "transfer", "--all", "--from", str(folders["source"]), "--to", str(folders["bigger"]))
    assert result.exit_code == 4 and "unrelated" in result.stderr
    assert list(registry.catalog()) == ["tiny-llama"]


def test_transfer_refusals(registry: Registry, source: LoadedModel, folders: dict[str, Path]) -> None:
    publish_random_expert(registry, source, "arc", 1)
    bigger = str(folders["bigger"])
    lacking = t2(registry, "transfer", "arc", "--from", str(folders["source"]), "--to", bigger, "--targets", "attn")
    assert lacking.exit_code == 2 and "adapts role(s) gate,up,down but the target selection has none" in lacking.stderr
    cases = [
        (["arc", "--to", "/nonexistent/model", "--targets", "ffn"], 2, "unknown target 'ffn'"),
        (["arc", "--to", bigger, "--strength", "nan"], 2, "strength must be a finite number"),
        (["arc", "--to", bigger, "--mapping", "sorted"], 2, "unknown mapping 'sorted'"),
        (["--to", bigger], 2, "give one expert NAME"),
        (["arc", "--all", "--to", bigger], 2, "give one expert NAME"),
        (["--all", "-o", "x", "--to", bigger], 2, "leave out -o"),
        (["arc", "--to", bigger], 3, "cannot load it; pass --from MODEL"),
        (["--all", "--from", "nobody", "--to", bigger], 3, "no SVF experts for model nobody"),
    ]
    for args, code, message in cases:
        result = t2(registry, "transfer", *args)
        assert result.exit_code == code and message in result.stderr, (args, result.output)
    assert list(registry.catalog()) == ["tiny-llama"]
