"""The transformers engine: batched generation and scoring on CPU or CUDA, experts swapped in place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from t2cli.engines.base import (
    Generation,
    Prompt,
    Sampling,
    cut_at_stop,
    encode_prompt,
    label_token_ids,
    left_pad,
    pad_token_id,
)
from t2cli.models import LoadedModel
from t2cli.svd import decompose
from t2cli.svf import Factors, LiveAdapter


def _length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so left padding wastes little compute."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
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

    def __init__(self, loaded: LoadedModel, *, batch_size: int = 16) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size
        self.device = next(self.model.parameters()).device
        self.pad_id = pad_token_id(self.tokenizer)
        self._adapter: LiveAdapter | None = None
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

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
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
        for batch in _length_batches([len(e) for e in encoded], self.batch_size):
            ids, mask, _ = left_pad([encoded[i] for i in batch], self.pad_id)
            output = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList(
                    [_StopOnText(self.tokenizer, sampling.stop, ids.shape[1])] if any(sampling.stop) else []
                ),
            )
            for row, index in enumerate(batch):
                new_tokens = output[row, ids.shape[1] :].tolist()
                results[index] = self._finish(new_tokens, eos_ids, len(encoded[index]), sampling)
        return [r for r in results if r is not None]

    def _finish(self, new_tokens: list[int], eos_ids: set[int], prompt_tokens: int, sampling: Sampling) -> Generation:
        ended = next((i for i, token in enumerate(new_tokens) if token in eos_ids), None)
        tokens = new_tokens if ended is None else new_tokens[: ended + 1]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, sampling.stop)
        finish = "stop" if ended is not None or stopped else "length"
        return Generation(text=text, token_ids=tuple(tokens), prompt_tokens=prompt_tokens, finish_reason=finish)

    @torch.inference_mode()
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

    @torch.inference_mode()
    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> torch.Tensor:
        """log p(label | prompt) over the labels' first tokens, renormalised among the labels.

        One prefill per batch and no generation: the cheap way to ask "which of these?".
        """
        label_ids = torch.tensor(label_token_ids(self.tokenizer, labels, chat=self.loaded.chat))
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        out = torch.empty(len(prompts), len(labels))
        for batch in _length_batches([len(e) for e in encoded], self.batch_size):
            ids, mask, positions = left_pad([encoded[i] for i in batch], self.pad_id)
            logits = (
                self.model(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    position_ids=positions.to(self.device),
                    logits_to_keep=1,
                )
                .logits[:, -1]
                .float()
            )
            out[batch] = torch.log_softmax(logits[:, label_ids.to(logits.device)], dim=-1).cpu()
        return out
