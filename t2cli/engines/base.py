"""The protocol every inference engine implements, and what engines share.

A prompt is either plain text (sent as is) or a list of chat messages (rendered with the
tokenizer's chat template and a generation prompt). Engines generate for a whole batch, score
continuations by log-likelihood, and swap an expert's adapted weights in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from t2cli.errors import BadInputError

if TYPE_CHECKING:
    from t2cli.models.loading import LoadedModel

Prompt = str | Sequence[Mapping[str, str]]
# A streaming generate's listener: (the prompt's index in that call, the new text of its answer).
OnText = Callable[[int, str], None]


@dataclass(frozen=True)
class Sampling:
    """How to decode: greedy when temperature is 0."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise BadInputError(f"max new tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise BadInputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise BadInputError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Generation:
    """One completion: its text (cut at the first stop string) and its token ids."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


@dataclass(frozen=True)
class RowExpert:
    """An SVF expert answering some rows of a mixed batch (`Engine.generate_rows`). `key` names exactly
    these weights (z and rule), so an engine may keep what it built for them, and KV cache computed with
    them is never shared with other weights."""

    z: Mapping[str, torch.Tensor]
    rule: str
    key: str

    @classmethod
    def of(cls, z: Mapping[str, torch.Tensor], rule: str) -> RowExpert:
        digest = hashlib.sha256(rule.encode())
        for name in sorted(z):
            digest.update(name.encode())
            digest.update(z[name].detach().float().cpu().contiguous().numpy().tobytes())
        return cls(z=z, rule=rule, key=digest.hexdigest()[:24])


def distinct_row_experts(prompts: Sequence[Prompt], experts: Sequence[RowExpert | None]) -> dict[str, RowExpert]:
    """The experts a `generate_rows` batch names, each once by key, after checking there is one per prompt."""
    if len(experts) != len(prompts):
        raise BadInputError(f"{len(prompts)} prompts but {len(experts)} row experts; pass one per prompt")
    return {expert.key: expert for expert in experts if expert is not None}


class Engine(Protocol):
    """What every inference backend does. Both passes and evaluation use only these methods."""

    name: str
    batch_size: int
    # Whether `generate_mixed` runs a batch with one LoRA adapter per row (pass 2 without swaps).
    mixed_batches: bool
    # Whether `generate_rows` runs a batch with one exact SVF expert per row (pass 2 without swaps).
    row_experts: bool
    # Whether `generate` takes `on_text` and calls it with each row's new text as tokens are generated
    # (t2cli.engines.stream): the pieces of a row concatenate to its Generation's text.
    streams: bool

    def generate(
        self, prompts: Sequence[Prompt], sampling: Sampling, on_text: OnText | None = None
    ) -> list[Generation]: ...

    def generate_rows(
        self,
        prompts: Sequence[Prompt],
        experts: Sequence[RowExpert | None],
        sampling: Sampling,
        on_text: OnText | None = None,
    ) -> list[Generation]:
        """`generate` with each prompt answered by its own expert's W'(z) (None: the base weights), all in
        one batch; the engine must hold the base weights (`set_expert(None)`)."""
        ...

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]:
        """log p(continuation | prompt) summed over the continuation's tokens."""
        ...

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> torch.Tensor:
        """log p(label | prompt) over the labels' first tokens, renormalised among the labels: one prefill per
        batch, no generation (pass 1 routing reads this)."""
        ...

    def set_expert(self, z: Mapping[str, torch.Tensor] | None, rule: str = "none") -> None:
        """Swap in W'(z) for the matrices z names (None: the base weights)."""
        ...


class EnginePlugin(Protocol):
    """An engine class as `--engine` sees it (t2cli.engines): its name, what it can do, how it starts.

    Callers never name an engine; they ask for a capability instead.
    """

    name: str
    # It reads the checkpoint itself: t2 builds no transformers model for it (only the files' targets and
    # fingerprint), so it cannot run a model built in memory, a PEFT-wrapped one, or the model being trained.
    loads_weights_itself: bool
    tensor_parallel: bool  # takes --tp N > 1
    auto_priority: int | None  # `--engine auto` picks the usable engine with the highest; None: only by name

    @classmethod
    def unavailable(cls) -> str | None:
        """Why it cannot run on this machine, with the fix (None: it can)."""
        ...

    @classmethod
    def start(cls, loaded: LoadedModel, *, batch_size: int, tensor_parallel: int) -> Engine:
        """An engine over `loaded` (`tensor_parallel` is 1 unless the engine takes --tp)."""
        ...


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The exact text the model sees: chat messages through the template, plain text unchanged."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        # Base models without a template (e.g. Gemma-3-270M) get the user turns as plain text.
        return "\n\n".join(message["content"] for message in prompt)
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return text, False
    return text[: min(cuts)], True


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a prompt. Chat templates spell out their own special tokens; plain prompts get
    the tokenizer's (BOS for base models, without which e.g. Gemma's output degenerates)."""
    text = render_prompt(tokenizer, prompt)
    templated = not isinstance(prompt, str) and bool(getattr(tokenizer, "chat_template", None))
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def pad_token_id(tokenizer: Any) -> int:
    """The id left padding uses (masked out, so any id works when the tokenizer names none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask, position ids) for rows aligned on the right.

    Left padding puts every row's last token in the last column, so one `logits_to_keep` serves
    the whole batch; explicit positions keep each row's positions starting at 0.
    """
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp_min(0)


def label_token_ids(tokenizer: Any, labels: Sequence[str], *, chat: bool) -> list[int]:
    """The token each label starts with as the first token of an answer.

    A chat answer starts right after the assistant header, so the label is unspaced ("A"); a plain
    prompt ends with a cue like "Answer:", after which the label follows a space (" A") — unless
    the tokenizer spells that space as a token of its own. Labels must start with distinct tokens,
    or their next-token probabilities cannot tell them apart.
    """
    ids = []
    for label in labels:
        tokens = tokenizer(label if chat else f" {label}", add_special_tokens=False)["input_ids"]
        if tokens and not tokenizer.decode(tokens[:1]).strip():
            tokens = tokenizer(label, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise BadInputError(f"label {label!r} encodes to no tokens; use non-empty labels")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise BadInputError(f"labels {list(labels)} share a first token; use labels that start differently")
    return ids


def question_text(prompt: Prompt) -> str:
    """What the user asks: the plain prompt, or the last user message of a chat."""
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")
