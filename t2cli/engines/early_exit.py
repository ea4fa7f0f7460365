"""Pass 1 at a fraction of a prefill: the base model's hidden states after its first L decoder layers.

A probe router (t2cli.adapt.probe) reads the mean hidden state of a request's first N tokens at layer L,
so pass 1 needs only the embeddings and L of the model's layers. Two ways to run just those:
- `truncated_view`: over a model already in memory (the hf engine), a decoder that shares its modules and
  stops after layer L (no copy of any weight);
- `load_truncated`: from the checkpoint, a decoder of L layers (the vLLM engine, whose weights live in
  vLLM's worker), reading L / num_layers of the decoder's weights plus the embeddings, no LM head.

"Layer L" is the output of the L-th decoder layer, before the final norm: `hidden_states[L]` of a full
forward with `output_hidden_states=True`, for L below the model's depth.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from t2cli.errors import BadInputError, EngineError


def decoder_of(model: Any) -> Any:
    """The decoder stack (embeddings, layers, final norm) of a causal LM, or the decoder itself."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    if not hasattr(decoder, "layers") or not hasattr(decoder, "norm"):
        raise BadInputError(f"{type(model).__name__} has no decoder layers to stop early in; use a decoder-only model")
    return decoder


def check_layer(layer: int, depth: int) -> int:
    if not 1 <= layer <= depth:
        raise BadInputError(f"layer {layer} is outside the model's 1..{depth} decoder layers; pick one in range")
    return layer


def truncated_config(config: Any, layer: int) -> Any:
    """A copy of a decoder's config with only its first `layer` layers (and their per-layer settings)."""
    config = copy.deepcopy(config)
    check_layer(layer, config.num_hidden_layers)
    config.num_hidden_layers = layer
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:layer]
    return config


def truncated_view(model: Any, layer: int) -> Any:
    """A decoder that runs `model`'s embeddings and first `layer` layers and returns their output: its
    modules are `model`'s own (weights shared, never copied), its final norm the identity."""
    decoder = decoder_of(model)
    view = copy.copy(decoder)  # the attributes; the module table is replaced below, not shared
    view._modules = dict(decoder._modules)
    view._modules["layers"] = torch.nn.ModuleList(list(decoder.layers)[: check_layer(layer, len(decoder.layers))])
    view._modules["norm"] = torch.nn.Identity()
    view.config = truncated_config(decoder.config, layer)
    return view


def load_truncated(source: str, layer: int, dtype: torch.dtype) -> Any:
    """A decoder of the checkpoint's first `layer` layers, read from `source` (a folder or an HF id): the
    embeddings and those layers' weights only (the other layers and the LM head stay on disk)."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as transformers_logging

    config = truncated_config(AutoConfig.from_pretrained(source).get_text_config(), layer)
    # The weights left on disk on purpose would fill transformers' load report (a table on every pass 1),
    # so it is silenced, and what would make the probe read wrong states, a weight it needs missing from
    # the checkpoint, is checked here instead.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = AutoModel.from_pretrained(source, config=config, dtype=dtype, output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
    absent = sorted(info["missing_keys"]) + sorted(str(entry[0]) for entry in info["mismatched_keys"])
    if absent:
        raise EngineError(
            f"the checkpoint {source} lacks {absent[0]} (or holds it in another shape), which a probe on layer "
            f"{layer} reads; check the model folder, or route with --adapt classifier"
        )
    return truncated_view(model.eval(), layer)  # the checkpoint's final norm does not apply at layer L


def request_ids(tokenizer: Any, text: str, tokens: int) -> tuple[list[int], int]:
    """A request's token ids as the probe reads them — the tokenizer's own leading special tokens (a BOS),
    then the first `tokens` tokens of the text — and how many leading ids are special (not pooled)."""
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    full = tokenizer(text, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    head = [bos] if bos is not None and full[:1] == [bos] and text_ids[:1] != [bos] else []
    if not text_ids:  # an empty request still needs a position to read
        text_ids = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0]
    return head + text_ids, len(head)


@torch.no_grad()
def pooled_states(
    decoder: Any, tokenizer: Any, texts: Sequence[str], tokens: int, batch_size: int = 16
) -> torch.Tensor:
    """One row per text: the mean over its first `tokens` text tokens of `decoder`'s output (float32).

    Batches of similar length, right-padded: a causal model's states at a row's own positions do not
    depend on the padding after them, and the mask keeps padding out of the mean."""
    if tokens < 1:
        raise BadInputError(f"a probe reads at least 1 token of each request, got {tokens}")
    encoded = [request_ids(tokenizer, text, tokens) for text in texts]
    device = next(decoder.parameters()).device
    width = decoder.config.hidden_size
    out = torch.empty(len(texts), width, dtype=torch.float32)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i][0]))
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        longest = max(len(encoded[i][0]) for i in batch)
        ids = torch.zeros(len(batch), longest, dtype=torch.long)
        mask = torch.zeros(len(batch), longest, dtype=torch.long)
        pooled = torch.zeros(len(batch), longest)
        for row, index in enumerate(batch):
            row_ids, head = encoded[index]
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
            mask[row, : len(row_ids)] = 1
            pooled[row, head : len(row_ids)] = 1.0 / (len(row_ids) - head)
        states = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
        hidden = states.last_hidden_state.float().cpu()
        out[batch] = torch.einsum("bt,btd->bd", pooled, hidden)
    return out
