"""Pass 1 of Transformer²: for every prompt, the expert (or α-mixture) that should answer it.

Routing is pure: a router reads the prompts (through the engine slot it was given) and returns
decisions; resolving the bank and running a few-shot search happen before, in t2cli.adapt.prepare.

Strategies:
- `prompt`: the base model is asked which category the request belongs to
  (`tasks.classification_messages`), and the answer is read from the next-token log-probabilities of
  the category labels after the cue "Category:", one batched prefill (`label_logprobs`), no generation;
  built-in tasks are named by a plain word (math, code, science), and the labels' prior is calibrated
  away with a content-free request in the same prefill;
- `classifier`: the same question, with the task names as labels (what `t2 train --task cls` teaches),
  asked with the classifier expert (manifest task `cls`) applied;
- `few-shot`: one α-mixture for all prompts, found beforehand by CEM on a few labelled examples of the
  target task and kept as a registry expert (`t2cli.adapt.fewshot`); routing then is a FixedRouter.
  With the shots taken from the batch, one mixture per task, and routing is a TaskRouter.

`prompt` and `classifier` read at most `route_tokens` tokens of each request (`shown_request`): what a
request is about shows in its opening, and the rest only lengthens pass 1's prefill.

Labels must start with distinct tokens (the only thing next-token scoring can tell apart); when they
do not, the categories are shown as A, B, C... and the letters are read instead.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from t2cli.adapt.options import ROUTE_TOKENS, check_route_tokens
from t2cli.engines.base import Prompt, label_token_ids, question_text, render_prompt
from t2cli.errors import BadInputError
from t2cli.fsutil import canonical_json
from t2cli.tasks.classification import classification_messages, classification_prompt

if TYPE_CHECKING:
    from t2cli.adapt.bank import Bank
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.manifest import Manifest
    from t2cli.experts.registry import ExpertRef
    from t2cli.models.loading import LoadedModel

CUE = "Category:"


LABEL_LETTERS = string.ascii_uppercase


# The words the base model answers with for the built-in tasks. A small model cannot tell "gsm8k" from
# "arc", but knows "math" from "code": SmolLM2-135M routed 0 of the 12 examples/prompts.jsonl right with
# task names, 6 with these words and 8 with these words calibrated. Other tasks answer with their name.
ROUTING_WORDS = {"gsm8k": "math", "math": "math", "mbpp": "code", "humaneval": "code", "arc": "science"}


NULL_REQUEST = "N/A"


def shown_request(tokenizer: Any, prompt: Prompt, route_tokens: int | None) -> str:
    """The request as pass 1 shows it: its question text, cut after its first `route_tokens` tokens.

    The cut is at a token boundary of the text itself (the tokenizer's offsets) rather than a decode
    of the kept ids: decoding does not give back the spacing of every vocabulary."""
    text = question_text(prompt)
    if route_tokens is None:
        return text
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return text if len(offsets) <= route_tokens else text[: offsets[route_tokens - 1][1]]


@dataclass(frozen=True)
class Decision:
    """Where one prompt goes: an expert spec (None: base weights), the α of a mixture, the category
    label, the scores behind the choice (label probabilities, or a search's metrics), and whether the
    prompt was one of the shots that mixture was searched on (its score is then not held out)."""

    expert: str | None
    alpha: dict[str, float] | None
    label: str
    scores: dict[str, float]
    shot: bool = False


BASE = Decision(None, None, "base", {})


def _space_is_own_token(tokenizer: Any) -> bool:
    """Whether " A" starts with a bare space token (char-level vocabularies): then the cue ends with it."""
    ids = tokenizer(" A", add_special_tokens=False)["input_ids"]
    return bool(ids) and not tokenizer.decode(ids[:1]).strip()


def answer_labels(labels: Sequence[str], chat: bool) -> list[str]:
    """Labels as `label_logprobs` reads them after the cue. The cue ends with a colon, so the label
    follows a space: plain prompts get it from `label_token_ids`; chat answers are spaced here."""
    return [f" {label}" for label in labels] if chat else list(labels)


def routing_labels(tokenizer: Any, names: Sequence[str], chat: bool) -> list[str]:
    """The category names if they start with distinct tokens, else letters A, B, C..."""
    try:
        label_token_ids(tokenizer, answer_labels(names, chat), chat=chat)
        return list(names)
    except BadInputError:
        if len(names) > len(LABEL_LETTERS):
            raise BadInputError(
                f"{len(names)} categories share first tokens and exceed the {len(LABEL_LETTERS)} letter labels; "
                "pick fewer experts with --experts"
            ) from None
    letters = list(LABEL_LETTERS[: len(names)])
    label_token_ids(tokenizer, answer_labels(letters, chat), chat=chat)
    return letters


def routing_prompt(
    tokenizer: Any, question: str, categories: Sequence[tuple[str, str]], labels: Sequence[str], chat: bool
) -> str:
    """The classification question, ending with the answer cue so the next token is the label."""
    shown = [
        (label, description if label == name else f"{name} ({description})")
        for (name, description), label in zip(categories, labels, strict=True)
    ]
    messages = classification_messages(question, shown)
    cue = CUE + (" " if _space_is_own_token(tokenizer) else "")
    if not chat:
        return f"{render_prompt(tokenizer, messages)}\n{cue}"
    text = render_prompt(tokenizer, messages)
    # A str prompt is encoded with the tokenizer's special tokens; a BOS the template wrote would double.
    bos = tokenizer.bos_token
    if (
        bos
        and text.startswith(bos)
        and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [tokenizer.bos_token_id]
    ):
        text = text[len(bos) :]
    return text + cue


class Router(Protocol):
    """Pass 1: decisions for a batch of prompts. `identity` says what shapes them (for run keys)."""

    @property
    def identity(self) -> dict[str, Any]: ...

    @property
    def categories(self) -> list[str]:
        """The labels its decisions can carry."""
        ...

    @property
    def note(self) -> str | None:
        """A line for the user about how pass 1 was set up, if any."""
        ...

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]: ...


def label_decisions(probabilities: torch.Tensor, categories: Sequence[str], bank: Bank) -> list[Decision]:
    """One decision per row of category probabilities: the likeliest category's expert (or the base)."""
    decisions = []
    for row in probabilities:
        label = categories[int(row.argmax())]
        scores = {name: round(float(p), 4) for name, p in zip(categories, row, strict=True)}
        decisions.append(Decision(bank.expert_for(label), None, label, scores))
    return decisions


class CategoryRouter:
    """What the `prompt` and `classifier` strategies share: each request, cut to its first `route_tokens`
    tokens, is scored against the categories with `held` applied (None: the base weights), and routed
    to the likeliest category's expert. A strategy says how the scores are read (`probabilities`) and
    what else shapes them (`settings`)."""

    strategy: str
    held: str | None = None
    categories: list[str]

    def __init__(self, slot: ExpertSlot, loaded: LoadedModel, bank: Bank, route_tokens: int | None) -> None:
        self.slot, self.loaded, self.bank = slot, loaded, bank
        self.route_tokens = check_route_tokens(route_tokens)
        self.note: str | None = None

    def settings(self) -> dict[str, Any]:
        return {}

    def probabilities(self, requests: Sequence[str]) -> torch.Tensor:
        """One row of category probabilities per request (as `shown_request` cut it)."""
        raise NotImplementedError

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "bank": [e.ref.spec for e in self.bank.experts],
            **self.settings(),
            "route_tokens": self.route_tokens,
        }

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]:
        if not prompts:
            return []
        self.slot.hold(self.held)
        requests = [shown_request(self.loaded.tokenizer, p, self.route_tokens) for p in prompts]
        return label_decisions(self.probabilities(requests), self.categories, self.bank)


class LabelRouter(CategoryRouter):
    """The `prompt` strategy: the base model is asked which category a request is.

    With `calibrate`, a content-free request ("N/A") rides along in the same prefill and its label
    log-probabilities are subtracted from every row ("calibrate before use", Zhao et al. 2021): small
    models favour some labels whatever the request (SmolLM2-135M picks the first listed), and the
    content-free row measures exactly that bias.
    """

    strategy = "prompt"

    def __init__(
        self,
        slot: ExpertSlot,
        loaded: LoadedModel,
        bank: Bank,
        *,
        calibrate: bool = True,
        route_tokens: int | None = ROUTE_TOKENS,
    ) -> None:
        super().__init__(slot, loaded, bank, route_tokens)
        self.calibrate = calibrate
        self.categories = [name for name, _ in bank.categories]
        # The base model answers with plain words it knows ("math", "code") rather than task names.
        words = [ROUTING_WORDS.get(name, name) for name in self.categories]
        self.shown = [(word, description) for word, (_, description) in zip(words, bank.categories, strict=True)]
        self.labels = routing_labels(loaded.tokenizer, words, loaded.chat)

    def settings(self) -> dict[str, Any]:
        return {"labels": self.labels, "calibrate": self.calibrate}

    def probabilities(self, requests: Sequence[str]) -> torch.Tensor:
        questions = [*requests, NULL_REQUEST] if self.calibrate else list(requests)
        tokenizer, chat = self.loaded.tokenizer, self.loaded.chat
        routing = [routing_prompt(tokenizer, question, self.shown, self.labels, chat) for question in questions]
        logprobs = self.slot.engine.label_logprobs(routing, answer_labels(self.labels, chat))
        if self.calibrate:
            logprobs = torch.log_softmax(logprobs[:-1] - logprobs[-1], dim=-1)
        return logprobs.exp()


def classifier_categories(manifest: Manifest, bank: Bank) -> list[tuple[str, str]]:
    """The (name, description) list a classifier expert was trained to choose from, in its order.

    Newer `cls` experts record it (`provenance.categories`); for older ones it is rebuilt as
    `t2 train --task cls --experts` builds it, from the bank's tasks in name order.
    """
    recorded = manifest.provenance.get("categories")
    if recorded:
        return [(str(name), str(description)) for name, description in recorded]
    return [(e.task, e.description) for e in bank.experts]


class ClassifierRouter(CategoryRouter):
    """The `classifier` strategy: the `cls` expert asked exactly as it was trained — the cls task's
    question over the categories it learnt, its answer read as the categories' first-token
    probabilities after the assistant header — so pass 1 sees the format its training optimised.
    A category with no expert in the bank (or `other`) routes to the base weights."""

    strategy = "classifier"

    def __init__(
        self,
        slot: ExpertSlot,
        loaded: LoadedModel,
        bank: Bank,
        classifier: ExpertRef,
        *,
        route_tokens: int | None = ROUTE_TOKENS,
    ) -> None:
        super().__init__(slot, loaded, bank, route_tokens)
        self.classifier = self.held = classifier.spec
        self.shown = classifier_categories(classifier.manifest(), bank)
        self.categories = [name for name, _ in self.shown]

    def settings(self) -> dict[str, Any]:
        return {"classifier": self.classifier, "categories": self.categories}

    def probabilities(self, requests: Sequence[str]) -> torch.Tensor:
        asked = [classification_prompt(request, self.shown, chat=self.loaded.chat) for request in requests]
        return self.slot.engine.label_logprobs(asked, self.categories).exp()


@dataclass(frozen=True)
class FixedRouter:
    """The same decision for every prompt: base weights, a named expert, or a few-shot mixture."""

    decision: Decision
    note: str | None = None  # a line for the user, e.g. that a saved search was reused

    @property
    def identity(self) -> dict[str, Any]:
        return {"expert": self.decision.expert}

    @property
    def categories(self) -> list[str]:
        return [self.decision.label]

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]:
        return [self.decision] * len(prompts)


@dataclass(frozen=True)
class TaskRouter:
    """Few-shot with the shots from the batch: each prompt gets the mixture searched for its line's task.
    The decisions are made beforehand from the lines (t2cli.adapt.prepare.batch_router) and looked up by
    the prompt's content; a prompt not in the table gets `fallback`."""

    decisions: Mapping[str, Decision]  # canonical JSON of a prompt → its decision
    fallback: Decision
    note: str | None = None

    @property
    def identity(self) -> dict[str, Any]:
        experts = {d.expert for d in self.decisions.values()} | {self.fallback.expert}
        return {"strategy": "few-shot", "experts": sorted(experts, key=str)}

    @property
    def categories(self) -> list[str]:
        return sorted({d.label for d in self.decisions.values()} | {self.fallback.label})

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]:
        return [self.decisions.get(canonical_json(prompt), self.fallback) for prompt in prompts]
