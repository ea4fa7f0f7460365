"""The transformers engine: batched generation and scoring on CPU or CUDA, experts swapped in place."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from t2cli.engines.base import (
    Generation,
    OnText,
    Prompt,
    RowExpert,
    Sampling,
    cut_at_stop,
    distinct_row_experts,
    encode_prompt,
    label_token_ids,
    left_pad,
    pad_token_id,
)
from t2cli.engines.row_dispatch import RowDispatch
from t2cli.engines.stream import TokenStream
from t2cli.errors import EngineError
from t2cli.models.loading import LoadedModel
from t2cli.svd import decompose
from t2cli.svf import Factors, LiveAdapter, adapted_weight, check_rule, check_vectors


def _length_batches(
    lengths: Sequence[int], batch_size: int, groups: Sequence[str | None] | None = None
) -> list[list[int]]:
    """Indices grouped into batches of similar length, so left padding wastes little compute; with `groups`
    (a row expert per index), each group's indices first, so a batch holds as few experts as it can."""
    rank = {key: position for position, key in enumerate(dict.fromkeys(groups or []))}
    order = sorted(range(len(lengths)), key=lambda i: (rank[groups[i]] if groups else 0, lengths[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class _StopOnText:
    """Marks a row finished once its generated text contains a stop string.

    transformers' own stop_strings needs a byte-level vocabulary to precompute token overlaps;
    decoding the recent tail works with any tokenizer and costs one short decode per row per step.
    """

    def __init__(self, tokenizer: object, stop: Sequence[str], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_width = prompt_width
        # Enough tokens to spell the longest stop string even at one character per token.
        self.window = max(len(s) for s in self.stop) + 2

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        tails = input_ids[:, max(self.prompt_width, input_ids.shape[1] - self.window) :].tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return torch.tensor([any(s in text for s in self.stop) for text in texts], device=input_ids.device)


class HFEngine:
    """Engine over a transformers causal LM (see `t2cli.engines.base.Engine`)."""

    name = "hf"
    mixed_batches = True
    row_experts = True
    streams = True
    loads_weights_itself = False
    tensor_parallel = False
    auto_priority = 0  # runs everywhere: what `auto` falls back to

    @classmethod
    def unavailable(cls) -> str | None:
        return None

    @classmethod
    def start(cls, loaded: LoadedModel, *, batch_size: int, tensor_parallel: int = 1) -> HFEngine:
        return cls(loaded, batch_size=batch_size)

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 16) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size
        self.device = next(self.model.parameters()).device
        self.pad_id = pad_token_id(self.tokenizer)
        self._adapter: LiveAdapter | None = None
        self._peft: Any = None  # a PEFT wrapper sharing the model's tensors, made for the first mixed batch
        self._adapter_names: dict[str, str] = {}
        self._row_weights: dict[str, dict[str, torch.Tensor]] = {}  # row expert key → its W'(z), this call's only
        self.swaps = 0

    def _factors_for(self, names: Sequence[str]) -> dict[str, Factors]:
        wanted = set(names)
        return decompose(self.loaded, [t for t in self.loaded.targets if t.name in wanted]).factors

    def set_expert(self, z: Mapping[str, torch.Tensor] | None, rule: str = "none") -> None:
        """Swap in W'(z) for the matrices z names (None: the base weights), from the base each time."""
        if z and (self._adapter is None or not set(z) <= set(self._adapter.factors)):
            covered = set(self._adapter.factors) if self._adapter else set()
            if self._adapter is not None:
                self._adapter.restore()
            self._adapter = LiveAdapter(self.model, self._factors_for(sorted(covered | set(z))))
        if self._adapter is not None:
            self._adapter.apply(z, rule)
        self.swaps += 1

    # no_grad, not inference_mode: a model whose layers are sharded (FSDP) gathers them into buffers it
    # later updates in training, which tensors made under inference mode refuse.
    @torch.no_grad()
    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, on_text: OnText | None = None
    ) -> list[Generation]:
        return self._generate(self.model, prompts, sampling, None, on_text)

    @torch.no_grad()
    def generate_mixed(
        self,
        prompts: Sequence[Prompt],
        adapters: Sequence[Path | None],
        sampling: Sampling,
        on_text: OnText | None = None,
    ) -> list[Generation]:
        """One batch in which each prompt has its own PEFT adapter folder (None: the base weights).

        PEFT's mixed-adapter batches apply each row's LoRA to that row only, so no weights are swapped;
        the engine must hold the base weights (`set_expert(None)`). Adapters load once and stay.
        """
        if self._adapter is not None and self._adapter.active:
            raise EngineError("mixed-adapter batches need the base weights held; call set_expert(None) first")
        names = [None if folder is None else self._load_adapter(Path(folder)) for folder in adapters]
        if self._peft is None:
            return self.generate(prompts, sampling, on_text)
        return self._generate(self._peft, prompts, sampling, [name or "__base__" for name in names], on_text)

    @torch.no_grad()
    def generate_rows(
        self,
        prompts: Sequence[Prompt],
        experts: Sequence[RowExpert | None],
        sampling: Sampling,
        on_text: OnText | None = None,
    ) -> list[Generation]:
        """One batch in which each prompt is answered by its own expert's exact W'(z) (None: the base).

        Each expert's adapted matrices are built once and kept while the next call needs them: one
        copy of the adapted matrices per expert, the memory a mixed pass 2 pays for not swapping."""
        if self._adapter is not None and self._adapter.active:
            raise EngineError("per-row batches need the base weights held; call set_expert(None) first")
        distinct = distinct_row_experts(prompts, experts)
        self._row_weights = {
            key: self._row_weights.get(key) or self._adapted(expert) for key, expert in distinct.items()
        }
        with RowDispatch(self.model, self._row_weights) as dispatch:
            keys = [None if expert is None else expert.key for expert in experts]
            return self._generate(self.model, prompts, sampling, None, on_text, (dispatch, keys))

    def _adapted(self, expert: RowExpert) -> dict[str, torch.Tensor]:
        factors = self._factors_for(sorted(expert.z))
        check_vectors(expert.z, factors)
        rule = check_rule(expert.rule)
        params = dict(self.model.named_parameters())
        return {name: adapted_weight(params[name].data, factors[name], z, rule) for name, z in expert.z.items()}

    def _load_adapter(self, folder: Path) -> str:
        """The PEFT adapter name of an exported folder, loading it on first use."""
        from peft import PeftModel

        from t2cli.models.loading import shared_copy

        key = str(folder.resolve())
        if key not in self._adapter_names:
            name = f"t2_{len(self._adapter_names)}"
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(shared_copy(self.model), key, adapter_name=name).eval()
            else:
                self._peft.load_adapter(key, adapter_name=name)
            self._adapter_names[key] = name
        return self._adapter_names[key]

    def _generate(
        self,
        model: Any,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        adapter_names: Sequence[str] | None,
        on_text: OnText | None,
        rows: tuple[RowDispatch, Sequence[str | None]] | None = None,
    ) -> list[Generation]:
        from transformers import GenerationConfig, StoppingCriteriaList

        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        eos_ids = self.model.generation_config.eos_token_id
        eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids] if eos_ids is not None else [])
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not sampling.greedy,
            temperature=sampling.temperature if not sampling.greedy else None,
            top_p=sampling.top_p if not sampling.greedy else None,
            top_k=None,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(eos_ids) or None,
        )
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        results: list[Generation | None] = [None] * len(prompts)
        for batch in _length_batches([len(e) for e in encoded], self.batch_size, rows[1] if rows else None):
            ids, mask, _ = left_pad([encoded[i] for i in batch], self.pad_id)
            extra: dict[str, Any] = (
                {} if adapter_names is None else {"adapter_names": [adapter_names[i] for i in batch]}
            )
            if rows is not None:
                rows[0].set_rows([rows[1][i] for i in batch], self.device)
            streamer = None if on_text is None else TokenStream(self.tokenizer, batch, eos_ids, sampling.stop, on_text)
            if streamer is not None:
                extra["streamer"] = streamer
            output = model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList(
                    [_StopOnText(self.tokenizer, sampling.stop, ids.shape[1])] if any(sampling.stop) else []
                ),
                **extra,
            )
            for row, index in enumerate(batch):
                new_tokens = output[row, ids.shape[1] :].tolist()
                generation = self._finish(new_tokens, eos_ids, len(encoded[index]), sampling)
                if streamer is not None:
                    streamer.finish(row, generation.text)
                results[index] = generation
        return [r for r in results if r is not None]

    def _finish(self, new_tokens: list[int], eos_ids: set[int], prompt_tokens: int, sampling: Sampling) -> Generation:
        ended = next((i for i, token in enumerate(new_tokens) if token in eos_ids), None)
        tokens = new_tokens if ended is None else new_tokens[: ended + 1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, sampling.stop)
        finish = "stop" if ended is not None or stopped else "length"
        return Generation(text=text, token_ids=tuple(tokens), prompt_tokens=prompt_tokens, finish_reason=finish)

    @torch.no_grad()
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]:
        """log p(continuation | prompt), summed over the continuation's tokens."""
        pairs = []
        for prompt, continuation in zip(prompts, continuations, strict=True):
            tail = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            pairs.append((encode_prompt(self.tokenizer, prompt), tail))
        scores: list[float] = [0.0] * len(pairs)
        for batch in _length_batches([len(p) + len(c) for p, c in pairs], self.batch_size):
            rows = [pairs[i][0] + pairs[i][1] for i in batch]
            ids, mask, positions = left_pad(rows, self.pad_id)
            # Left padding puts every continuation at the end, so only the last positions need logits.
            keep = max(len(pairs[i][1]) for i in batch) + 1
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                logits_to_keep=keep,
            ).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for row, index in enumerate(batch):
                tail = pairs[index][1]
                if not tail:
                    continue
                predicted = logprobs[row, keep - len(tail) - 1 : keep - 1]
                target = torch.tensor(tail, device=predicted.device).unsqueeze(-1)
                scores[index] = float(predicted.gather(-1, target).sum())
        return scores

    @torch.no_grad()
    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> torch.Tensor:
        """log p(label | prompt) over the labels' first tokens, renormalised among the labels.

        One prefill per batch and no generation: the cheap way to ask "which of these?". Routing
        prompts share a long head (template, instructions, category list): when the batch shares at
        least SHARED_PREFIX_MIN tokens, their keys and values are computed once and every batch
        continues from a copy of them.
        """
        label_ids = torch.tensor(label_token_ids(self.tokenizer, labels, chat=self.loaded.chat))
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        shared = shared_prefix_length(encoded)
        window = getattr(self.model.config, "sliding_window", None)
        if window and max(len(e) for e in encoded) >= window:
            shared = 0  # a sliding window counts the padding between head and tail: not the same attention
        prefix = self._prefill(encoded[0][:shared]) if shared >= SHARED_PREFIX_MIN else None
        shared = shared if prefix is not None else 0
        out = torch.empty(len(prompts), len(labels))
        for batch in _length_batches([len(e) for e in encoded], self.batch_size):
            ids, mask, positions = left_pad([encoded[i][shared:] for i in batch], self.pad_id)
            inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions + shared}
            if prefix is not None:
                # Padding sits between the shared head and each row's own tail: masked, and positions
                # run on from the head, so each row sees exactly its own prompt.
                cache = copy.deepcopy(prefix)
                cache.batch_repeat_interleave(len(batch))
                inputs["attention_mask"] = torch.cat([torch.ones(len(batch), shared, dtype=mask.dtype), mask], 1)
                inputs["past_key_values"] = cache
            inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1].float()
            out[batch] = torch.log_softmax(logits[:, label_ids.to(logits.device)], dim=-1).cpu()
        return out

    def pooled_hidden_states(self, texts: Sequence[str], layer: int, tokens: int) -> torch.Tensor:
        """Pass 1 of a probe: each text's mean hidden state over its first `tokens` tokens after the model's
        first `layer` decoder layers, the others not run (an early exit; t2cli.engines.early_exit). The
        engine must hold the base weights."""
        from t2cli.engines.early_exit import pooled_states, truncated_view

        if self._adapter is not None and self._adapter.active:
            raise EngineError("a probe reads the base weights' hidden states; call set_expert(None) first")
        return pooled_states(truncated_view(self.model, layer), self.tokenizer, texts, tokens, self.batch_size)

    def _prefill(self, ids: Sequence[int]) -> Any:
        """The KV cache of one token sequence (batch of one)."""
        tensor = torch.tensor([list(ids)], device=self.device)
        return self.model(input_ids=tensor, use_cache=True).past_key_values


# Below this many shared tokens, a separate prefill costs more than it saves.
SHARED_PREFIX_MIN = 16


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own (its last)."""
    if not rows:
        return 0
    limit = min(len(row) for row in rows) - 1
    first = rows[0]
    length = 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return max(length, 0)
