"""Pass 1's early exit: the first L decoder layers alone give the full model's hidden state at layer L."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from t2cli.engines.early_exit import load_truncated, pooled_states, request_ids, truncated_view
from t2cli.engines.hf import HFEngine
from t2cli.errors import BadInputError, EngineError
from tests.helpers import build_tiny_model, make_model_folder, tiny_model, tiny_tokenizer

TEXTS = ["what is two plus three?", "hi", "name the planet closest to the sun please", ""]


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gemma3_text"])
@pytest.mark.parametrize("layer", [1, 2])
def test_the_truncated_forward_equals_the_full_models_state_at_layer_l(model_type: str, layer: int) -> None:
    model = build_tiny_model(model_type, seed=3, num_hidden_layers=3)
    ids = torch.randint(0, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    full = model(input_ids=ids, output_hidden_states=True).hidden_states[layer]
    early = truncated_view(model, layer)(input_ids=ids).last_hidden_state
    torch.testing.assert_close(early, full, rtol=1e-5, atol=1e-5)
    assert len(early_layers := truncated_view(model, layer).layers) == layer
    assert early_layers[0].mlp.up_proj.weight is model.model.layers[0].mlp.up_proj.weight  # shared, not copied
    assert len(model.model.layers) == 3 and model.config.num_hidden_layers == 3  # the model is untouched


def test_a_layer_outside_the_model_is_refused() -> None:
    model = build_tiny_model("llama", num_hidden_layers=3)
    for layer in (0, 4):
        with pytest.raises(BadInputError, match="outside the model's 1..3"):
            truncated_view(model, layer)


def test_pooled_states_are_the_mean_over_the_first_n_tokens_batched_or_not() -> None:
    loaded = tiny_model()
    view = truncated_view(loaded.model, 1)
    batched = pooled_states(view, loaded.tokenizer, TEXTS, tokens=8, batch_size=3)
    for row, text in enumerate(TEXTS):
        ids, head = request_ids(loaded.tokenizer, text, 8)
        states = view(input_ids=torch.tensor([ids])).last_hidden_state[0]
        torch.testing.assert_close(batched[row], states[head:].mean(0), rtol=1e-5, atol=1e-5)
    # A request longer than N tokens is cut: what follows its first 8 tokens changes nothing.
    longer = pooled_states(view, loaded.tokenizer, ["what is two plus three? and more"], tokens=8)
    torch.testing.assert_close(longer[0], batched[0])


def test_request_ids_keep_the_bos_out_of_the_pooled_tokens() -> None:
    tokenizer = tiny_tokenizer()
    ids, head = request_ids(tokenizer, "abcdef", 4)
    assert ids[head:] == tokenizer("abcd", add_special_tokens=False)["input_ids"]
    assert request_ids(tokenizer, "", 4)[0][head:] == [tokenizer.eos_token_id]  # an empty request reads one token


def test_the_hf_engine_reads_base_states_only() -> None:
    loaded = tiny_model()
    engine = HFEngine(loaded)
    expected = pooled_states(truncated_view(loaded.model, 2), loaded.tokenizer, TEXTS, tokens=16)
    torch.testing.assert_close(engine.pooled_hidden_states(TEXTS, 2, 16), expected)
    engine.set_expert({t.name: torch.full((t.rank,), 1.5) for t in loaded.select("mlp")})
    with pytest.raises(Exception, match="base weights"):
        engine.pooled_hidden_states(TEXTS, 2, 16)


def test_a_truncated_checkpoint_reads_only_its_layers_and_matches_the_view(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(folder).eval()
    decoder = load_truncated(str(folder), 1, torch.float32)
    assert len(decoder.layers) == 1 and not hasattr(decoder, "lm_head")
    tokenizer = tiny_tokenizer()
    expected = pooled_states(truncated_view(full, 1), tokenizer, TEXTS, tokens=16)
    torch.testing.assert_close(pooled_states(decoder, tokenizer, TEXTS, tokens=16), expected)


def _drop_weight(folder: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    del tensors[name]
    save_file(tensors, path, metadata={"format": "pt"})


def test_a_truncated_checkpoint_needs_only_its_layers_and_says_nothing_of_the_rest(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    _drop_weight(folder, "model.layers.1.mlp.up_proj.weight")  # beyond layer 1: never read
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        assert len(load_truncated(str(folder), 1, torch.float32).layers) == 1
    finally:
        transformers_logger.removeHandler(handler)
    # The layers left on disk on purpose are not reported (transformers would list each as unexpected).
    assert not [record for record in records if "layers.1" in record.getMessage()]


def test_a_truncated_checkpoint_missing_a_weight_it_reads_is_refused(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    _drop_weight(folder, "model.layers.0.mlp.up_proj.weight")
    with pytest.raises(EngineError, match=r"lacks .*layers\.0\.mlp\.up_proj"):
        load_truncated(str(folder), 1, torch.float32)
