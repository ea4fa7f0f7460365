"""The probe's head, its registry artifact and `--adapt probe` end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from t2cli.adapt.bank import find_classifier, find_probe
from t2cli.adapt.probe import ProbeHead, decide, fit_probe
from t2cli.cli.app import app
from t2cli.errors import BadInputError, IntegrityError
from t2cli.experts.files import Expert, load_expert
from t2cli.experts.manifest import check_compatible, new_manifest
from t2cli.experts.manifest_fields import Z_FILE, ProbeInfo
from t2cli.experts.registry import Registry
from t2cli.experts.remotes import pull, push
from t2cli.models.loading import load_model
from tests.helpers import TRAINED, publish_expert, tiny_cli_world, tiny_model

CATEGORIES = (("gsm8k", "math"), ("arc", "science"), ("other", "anything else"))


def clusters(seed: int, per_class: int = 30) -> tuple[torch.Tensor, list[int]]:
    """Three well-separated Gaussian clusters in 8 dimensions."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(3, 8) * 6
    rows = [centres[c] + torch.randn(8, generator=generator) for c in range(3) for _ in range(per_class)]
    return torch.stack(rows), [c for c in range(3) for _ in range(per_class)]


def test_the_head_separates_separable_categories_and_calibrates() -> None:
    x, y = clusters(0)
    held, held_y = clusters(1)
    fit = fit_probe(x, y, held, held_y, classes=3, fallback=2)
    assert fit.validation_accuracy == 1.0 and fit.threshold == 0.0  # nothing to gain from a threshold
    assert fit.head.temperature > 0
    again = fit_probe(x, y, held, held_y, classes=3, fallback=2)
    torch.testing.assert_close(again.head.weight, fit.head.weight)  # deterministic
    restored = ProbeHead.from_tensors(fit.head.to_tensors())
    torch.testing.assert_close(restored.probabilities(held), fit.head.probabilities(held))


def test_a_request_under_the_threshold_keeps_the_base_weights() -> None:
    probabilities = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]])
    assert decide(probabilities, 0.6, fallback=2) == [2, 0]
    assert decide(probabilities, 0.6, fallback=None) == [0, 0]


def probe_expert(loaded, layer: int = 1, tokens: int = 8, width: int | None = None) -> Expert:
    """A probe of `loaded` whose head sends requests starting with 'w' to gsm8k, 'n' to arc, else other."""
    from t2cli.engines.early_exit import pooled_states, truncated_view

    texts = ["what is two plus three", "what is ten minus one", "name a planet", "name a gas", "hello", "hi there"]
    labels = [0, 0, 1, 1, 2, 2]
    features = pooled_states(truncated_view(loaded.model, layer), loaded.tokenizer, texts * 3, tokens)
    fit = fit_probe(features, labels * 3, features, labels * 3, classes=3, fallback=2)
    info = ProbeInfo(layer, tokens, width or int(features.shape[1]), CATEGORIES, fit.threshold)
    manifest = new_manifest(
        name="probe",
        base_model=loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets={},
        provenance=TRAINED | {"task": "cls"},
        task="cls",
        probe=info,
    )
    return Expert(manifest, fit.head.to_tensors())


def test_a_probe_is_published_verified_pushed_and_pulled_like_an_expert(tmp_path: Path) -> None:
    loaded = tiny_model()
    local = Registry(tmp_path / "local")
    ref = local.publish(probe_expert(loaded))
    assert local.verify() == []
    loaded_again = ref.load(loaded.fingerprint)
    assert loaded_again.manifest.kind == "probe" and loaded_again.manifest.probe.layer == 1
    url = f"file://{tmp_path / 'remote'}"
    assert push(local, ref.spec, url).action == "pushed"
    other = Registry(tmp_path / "other")
    assert pull(other, url, "probe").action == "pulled"
    assert other.verify() == [] and other.resolve("probe@1").manifest().probe == loaded_again.manifest.probe


def test_tampering_with_a_probe_is_caught(tmp_path: Path) -> None:
    loaded = tiny_model()
    store = Registry(tmp_path / "reg")
    ref = store.publish(probe_expert(loaded))
    manifest = ref.path / "manifest.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("layer: 1", "layer: 2"))
    with pytest.raises(IntegrityError, match="manifest_sha256"):
        load_expert(ref.path)
    manifest.write_text(text)
    data = bytearray((ref.path / Z_FILE).read_bytes())
    data[-3] ^= 0xFF
    (ref.path / Z_FILE).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum"):
        load_expert(ref.path)
    assert store.verify() != []


def test_a_probe_of_the_wrong_shape_or_kind_is_refused(tmp_path: Path) -> None:
    loaded = tiny_model()
    expert = probe_expert(loaded)
    wrong = Expert(expert.manifest, expert.z | {"bias": torch.zeros(5)})
    with pytest.raises(IntegrityError, match="bias"):
        Registry(tmp_path / "reg").publish(wrong)
    with pytest.raises(BadInputError, match="no targets"):
        new_manifest(
            name="p", base_model="m", base_fingerprint="ab" * 32, targets=loaded.select("mlp"),
            provenance=TRAINED | {"task": "cls"}, probe=expert.manifest.probe,
        )  # fmt: skip
    with pytest.raises(BadInputError, match="not an expert"):
        check_compatible(expert.manifest, expert.manifest)


def test_the_classifier_and_the_probe_are_found_apart(tmp_path: Path) -> None:
    loaded = tiny_model()
    store = Registry(tmp_path / "reg")
    store.publish(probe_expert(loaded))
    classifier = publish_expert(store, loaded, "cls", "cls")
    assert find_classifier(store, loaded.slug).spec == classifier.spec
    assert find_probe(store, loaded.slug).spec == "probe@1"
    with pytest.raises(BadInputError, match="not a probe"):
        find_probe(store, loaded.slug, "cls")


PROMPTS = [
    {"id": "m", "prompt": "what is two plus three", "task": "gsm8k"},
    {"id": "a", "prompt": "name a planet", "task": "arc"},
    {"id": "o", "messages": [{"role": "user", "content": "hello"}], "task": "other"},
]


def test_adapt_probe_end_to_end(tmp_path: Path, t2_home: Path) -> None:
    world = tiny_cli_world(tmp_path, PROMPTS)
    loaded = load_model(world["model"])
    Registry(world["registry"]).publish(probe_expert(loaded))
    out = tmp_path / "out.jsonl"
    argv = ["run", str(world["prompts"]), "--adapt", "probe", "--max-new-tokens", "2", "-o", str(out), "--json"]
    result = CliRunner().invoke(app, [*argv, "--model", world["model"], "--registry", world["registry"]])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert rows["m"]["expert"] == "gsm8k-svf@1" and rows["a"]["expert"] == "arc-svf@1"
    assert rows["o"]["expert"] is None
    summary = json.loads(result.stdout)
    assert summary["pass1_swaps"] == 0  # no expert is swapped in to route


def test_registry_show_describes_a_probe(tmp_path: Path) -> None:
    from t2cli.models.loading import load_model as load

    world = tiny_cli_world(tmp_path, PROMPTS)
    Registry(world["registry"]).publish(probe_expert(load(world["model"])))
    result = CliRunner().invoke(app, ["registry", "show", "probe", "--registry", world["registry"]])
    assert result.exit_code == 0, result.output
    assert "threshold" in result.output and "categories" in result.output and "z per matrix" not in result.output
    shown = CliRunner().invoke(app, ["registry", "show", "probe", "--registry", world["registry"], "--json"])
    manifest = json.loads(shown.stdout)["manifest"]
    assert manifest["kind"] == "probe" and manifest["probe"]["layer"] == 1 and manifest["probe"]["tokens"] == 8


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"task": "cls", "method": "probe"}, "pass --layer L"),
        ({"task": "arc", "method": "probe", "layer": 2}, "--task cls"),
        ({"task": "cls", "method": "svf", "layer": 2}, "settings of --method probe"),
        ({"task": "cls", "method": "probe", "layer": 2, "tokens": 0}, "--tokens must be >= 1"),
    ],
)
def test_probe_settings_are_checked_before_anything_loads(settings: dict, problem: str) -> None:
    from t2cli.training.config import TrainConfig

    with pytest.raises(BadInputError, match=problem):
        TrainConfig(**settings)
    assert TrainConfig(task="cls", method="probe", layer=2).tokens == 64
