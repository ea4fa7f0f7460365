"""Shared fixtures: tiny random models built from configs, and the real SmolLM2 (marked)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from t2cli.models import LoadedModel, wrap_model

TINY_CONFIGS = {
    "llama": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    ),
    "mistral": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        sliding_window=None,
    ),
    "qwen2": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    ),
    "gemma3_text": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        sliding_window=16,
    ),
}


def build_tiny_model(model_type: str = "llama", seed: int = 0, **overrides: object) -> torch.nn.Module:
    """A random causal LM of the given architecture, small enough for unit tests."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **overrides})
    model = AutoModelForCausalLM.from_config(config).float().eval()
    model.requires_grad_(False)
    return model


def tiny_tokenizer() -> object:
    """A character-level tokenizer over a-z, space and a few specials (ids < 64, the tiny vocab)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = [chr(ord("a") + i) for i in range(26)] + [" ", ".", "?", ":", "0", "1", "2", "3", "4", "5"]
    symbols += [chr(ord("A") + i) for i in range(10)]
    vocab = {symbol: i for i, symbol in enumerate(symbols)} | {"<unk>": 60, "<s>": 61, "</s>": 62, "<pad>": 63}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def tiny_loaded(model_type: str = "llama", seed: int = 0, **overrides: object) -> LoadedModel:
    model = build_tiny_model(model_type, seed, **overrides)
    return wrap_model(model, None, spec=f"tiny-{model_type}", model_id=f"tiny-{model_type}")


@pytest.fixture
def t2_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty t2 home for this test."""
    home = tmp_path / "t2home"
    monkeypatch.setenv("T2_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A t2 home shared by the real-model tests, so SmolLM2 is converted from GGUF once per session."""
    return tmp_path_factory.mktemp("smollm2-home")


@pytest.fixture(scope="session")
def smollm2(smollm2_home: Path) -> LoadedModel:
    from t2cli.models import load_model

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("T2_HOME", str(smollm2_home))
        return load_model("smollm2-135m")


@pytest.fixture(autouse=True)
def transformers_engine_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--engine auto` would start vLLM wherever it is installed; tests ask for it by name instead."""
    monkeypatch.setenv("T2_ENGINE", "hf")
