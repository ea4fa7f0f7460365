"""Pass 1 of Transformer²: for every prompt, the expert (or α-mixture) that should answer it.

The **bank** is the experts of one base model in the registry (latest versions) whose manifest names
a task; each task is a category, and `other` (anything else) keeps the base weights. By default the
bank holds the trained, transferred and imported experts; composed and searched ones are mixtures of
those (their task would duplicate a member's) and the `cls` expert is the classifier, so they are
left out unless named with `experts=`. Two bank experts with the same task are refused.

Strategies:
- `prompt`: the base model is asked which category the request belongs to
  (`tasks.classification_messages`), and the answer is read from the next-token log-probabilities of
  the category labels after the cue "Category:", one batched prefill (`label_logprobs`), no generation;
  built-in tasks are named by a plain word (math, code, science), and the labels' prior is calibrated
  away with a content-free request in the same prefill;
- `classifier`: the same question, with the task names as labels (what `t2 train --task cls` teaches),
  asked with the classifier expert (manifest task `cls`) applied;
- `few-shot`: one α-mixture for all prompts, found by CEM on a few labelled examples of the target
  task and kept as a registry expert (`t2cli.fewshot`).

Labels must start with distinct tokens (the only thing next-token scoring can tell apart); when they
do not, the categories are shown as A, B, C... and the letters are read instead.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from t2cli.cem import Score
from t2cli.engines.base import Engine, Prompt, label_token_ids, render_prompt
from t2cli.errors import BadInputError, EngineError, NotFoundError
from t2cli.fewshot import SearchConfig, alpha_summary, few_shot_expert
from t2cli.recipes import recipe_from_dict
from t2cli.runio import question_text
from t2cli.tasks import classification_messages, classification_prompt, get_task, resolve_task

if TYPE_CHECKING:
    from t2cli.expert import Manifest
    from t2cli.models import LoadedModel
    from t2cli.store import ExpertRef, Registry

STRATEGIES = ("prompt", "classifier", "few-shot")
OTHER = "other"
OTHER_DESCRIPTION = "anything else, such as chit-chat, opinions or general knowledge"
CLASSIFIER_TASK = "cls"
BANK_KINDS = ("trained", "transferred", "imported")
CUE = "Category:"
LETTERS = string.ascii_uppercase
# The words the base model answers with for the built-in tasks. A small model cannot tell "gsm8k" from
# "arc", but knows "math" from "code": SmolLM2-135M routed 0 of the 12 examples/prompts.jsonl right with
# task names, 6 with these words and 8 with these words calibrated. Other tasks answer with their name.
ROUTING_WORDS = {"gsm8k": "math", "math": "math", "mbpp": "code", "humaneval": "code", "arc": "science"}
NULL_REQUEST = "N/A"
# What the slot holds after `apply`: never equal to an expert spec, so the next `hold` swaps.
_UNNAMED = "<unnamed z>"


@dataclass(frozen=True)
class Decision:
    """Where one prompt goes: an expert spec (None: base weights), the α of a mixture, the category
    label, and the scores behind the choice (label probabilities, or a search's metrics)."""

    expert: str | None
    alpha: dict[str, float] | None
    label: str
    scores: dict[str, float]


BASE = Decision(None, None, "base", {})


@dataclass(frozen=True)
class BankExpert:
    ref: ExpertRef
    task: str
    description: str


@dataclass(frozen=True)
class Bank:
    model_slug: str
    experts: tuple[BankExpert, ...]

    @property
    def categories(self) -> list[tuple[str, str]]:
        """(name, description) of every category, the bank's tasks then `other`."""
        return [(e.task, e.description) for e in self.experts] + [(OTHER, OTHER_DESCRIPTION)]

    def expert_for(self, label: str) -> str | None:
        return next((e.ref.spec for e in self.experts if e.task == label), None)


def task_description(manifest: Manifest) -> str:
    """The built-in task's one-sentence description (what the `cls` task trains with), else the
    manifest's description, else the task name."""
    try:
        return get_task(manifest.task).description
    except BadInputError:
        return manifest.description or str(manifest.task)


def load_bank(registry: Registry, model_slug: str, names: Sequence[str] = ()) -> Bank:
    """The bank of a model: the named experts, or every eligible expert's latest version."""
    if names:
        refs = [registry.resolve(name, model_slug) for name in names]
    else:
        latest = registry.catalog().get(model_slug, {})
        refs = [registry.ref(model_slug, name, versions[-1]) for name, versions in latest.items()]
    experts = []
    for ref in refs:
        manifest = ref.manifest()
        if names and (manifest.task is None or manifest.task == CLASSIFIER_TASK):
            raise BadInputError(
                f"expert {ref.spec} has no task to route to (task: {manifest.task}); drop it from --experts"
            )
        if names or (manifest.provenance["kind"] in BANK_KINDS and manifest.task not in (None, CLASSIFIER_TASK)):
            experts.append(BankExpert(ref, str(manifest.task), task_description(manifest)))
    if not experts:
        raise NotFoundError(
            f"no experts for model {model_slug} in {registry.root}; train some (`t2 train --task gsm8k`), "
            "pass --registry, or use --adapt none"
        )
    by_task = Counter(e.task for e in experts)
    clash = next((task for task, count in by_task.items() if count > 1), None)
    if clash is not None:
        specs = ", ".join(e.ref.spec for e in experts if e.task == clash)
        raise BadInputError(f"several experts serve task {clash!r} ({specs}); pick one per task with --experts")
    if OTHER in by_task:
        raise BadInputError(f"an expert's task is named {OTHER!r}, which means the base model; rename the task")
    return Bank(model_slug, tuple(sorted(experts, key=lambda e: e.task)))


class ExpertSlot:
    """An engine and the expert it holds: weights swap only when the wanted expert changes (counted)."""

    def __init__(self, engine: Engine, registry: Registry, loaded: LoadedModel) -> None:
        self.engine = engine
        self.registry = registry
        self.model_slug = loaded.slug
        self.fingerprint = loaded.fingerprint
        self.current: str | None = None  # a fresh engine holds the base weights
        self.swaps = 0

    def hold(self, spec: str | None) -> None:
        """Hold a pinned expert (`name@version`) or, with None, the base weights."""
        if spec == self.current:
            return
        if spec is None:
            self.engine.set_expert(None)
        else:
            expert = self.registry.resolve(spec, self.model_slug).load(self.fingerprint)
            self.engine.set_expert(expert.z, expert.manifest.svf_rule)
        self.current = spec
        self.swaps += 1

    def apply(self, z: dict[str, torch.Tensor], rule: str) -> None:
        """Hold an unnamed z, e.g. a search candidate."""
        self.engine.set_expert(z, rule)
        self.current = _UNNAMED
        self.swaps += 1


def find_classifier(registry: Registry, model_slug: str, name: str | None = None) -> ExpertRef:
    """The named classifier expert, else the model's only expert whose task is `cls`."""
    if name is not None:
        return registry.resolve(name, model_slug)
    latest = registry.catalog().get(model_slug, {})
    found = [registry.ref(model_slug, n, versions[-1]) for n, versions in latest.items()]
    found = [ref for ref in found if ref.manifest().task == CLASSIFIER_TASK]
    if not found:
        raise NotFoundError(
            f"no classifier expert (task cls) for model {model_slug} in {registry.root}; "
            "train one with `t2 train --task cls --experts arc,gsm8k,mbpp`"
        )
    if len(found) > 1:
        raise BadInputError(
            f"several classifier experts ({', '.join(r.spec for r in found)}); pick one with --classifier NAME"
        )
    return found[0]


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
        if len(names) > len(LETTERS):
            raise BadInputError(
                f"{len(names)} categories share first tokens and exceed the {len(LETTERS)} letter labels; "
                "pick fewer experts with --experts"
            ) from None
    letters = list(LETTERS[: len(names)])
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


def require_label_logprobs(engine: Engine) -> None:
    if not hasattr(engine, "label_logprobs"):
        raise EngineError(f"engine {engine.name!r} cannot read label probabilities; use --engine hf for routing")


def label_decisions(probabilities: torch.Tensor, categories: Sequence[str], bank: Bank) -> list[Decision]:
    """One decision per row of category probabilities: the likeliest category's expert (or the base)."""
    decisions = []
    for row in probabilities:
        label = categories[int(row.argmax())]
        scores = {name: round(float(p), 4) for name, p in zip(categories, row, strict=True)}
        decisions.append(Decision(bank.expert_for(label), None, label, scores))
    return decisions


class LabelRouter:
    """The `prompt` strategy: the base model is asked which category a request is.

    With `calibrate`, a content-free request ("N/A") rides along in the same prefill and its label
    log-probabilities are subtracted from every row ("calibrate before use", Zhao et al. 2021): small
    models favour some labels whatever the request (SmolLM2-135M picks the first listed), and the
    content-free row measures exactly that bias.
    """

    def __init__(
        self,
        slot: ExpertSlot,
        loaded: LoadedModel,
        bank: Bank,
        *,
        calibrate: bool = True,
    ) -> None:
        require_label_logprobs(slot.engine)
        self.slot, self.loaded, self.bank, self.calibrate = slot, loaded, bank, calibrate
        self.categories = [name for name, _ in bank.categories]
        # The base model answers with plain words it knows ("math", "code") rather than task names.
        words = [ROUTING_WORDS.get(name, name) for name in self.categories]
        self.shown = [(word, description) for word, (_, description) in zip(words, bank.categories, strict=True)]
        self.labels = routing_labels(loaded.tokenizer, words, loaded.chat)
        self.note = None

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "strategy": "prompt",
            "bank": [e.ref.spec for e in self.bank.experts],
            "labels": self.labels,
            "calibrate": self.calibrate,
        }

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]:
        if not prompts:
            return []
        self.slot.hold(None)
        questions = [question_text(p) for p in prompts] + ([NULL_REQUEST] if self.calibrate else [])
        routing = [
            routing_prompt(self.loaded.tokenizer, question, self.shown, self.labels, self.loaded.chat)
            for question in questions
        ]
        logprobs = self.slot.engine.label_logprobs(routing, answer_labels(self.labels, self.loaded.chat))
        if self.calibrate:
            logprobs = torch.log_softmax(logprobs[:-1] - logprobs[-1], dim=-1)
        return label_decisions(logprobs.exp(), self.categories, self.bank)


def classifier_categories(manifest: Manifest, bank: Bank) -> list[tuple[str, str]]:
    """The (name, description) list a classifier expert was trained to choose from, in its order.

    Newer `cls` experts record it (`provenance.categories`); for older ones it is rebuilt as
    `t2 train --task cls --experts` builds it, from the bank's tasks in name order.
    """
    recorded = manifest.provenance.get("categories")
    if recorded:
        return [(str(name), str(description)) for name, description in recorded]
    return [(e.task, e.description) for e in bank.experts]


class ClassifierRouter:
    """The `classifier` strategy: the `cls` expert asked exactly as it was trained — the cls task's
    question over the categories it learnt, its answer read as the categories' first-token
    probabilities after the assistant header — so pass 1 sees the format its training optimised.
    A category with no expert in the bank (or `other`) routes to the base weights."""

    def __init__(self, slot: ExpertSlot, loaded: LoadedModel, bank: Bank, classifier: ExpertRef) -> None:
        require_label_logprobs(slot.engine)
        self.slot, self.loaded, self.bank, self.classifier = slot, loaded, bank, classifier.spec
        self.shown = classifier_categories(classifier.manifest(), bank)
        self.categories = [name for name, _ in self.shown]
        self.note = None

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "strategy": "classifier",
            "bank": [e.ref.spec for e in self.bank.experts],
            "classifier": self.classifier,
            "categories": self.categories,
        }

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]:
        if not prompts:
            return []
        self.slot.hold(self.classifier)
        asked = [classification_prompt(question_text(p), self.shown, chat=self.loaded.chat) for p in prompts]
        return label_decisions(
            self.slot.engine.label_logprobs(asked, self.categories).exp(), self.categories, self.bank
        )


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
class StrategyOptions:
    """Options of the strategies beyond their name (CLI flags)."""

    experts: tuple[str, ...] = ()
    classifier: str | None = None
    calibrate: bool = True
    task: str | None = None
    shots: Path | None = None
    search: SearchConfig = field(default_factory=SearchConfig)
    save_as: str | None = None
    force: bool = False

    def few_shot_inputs(self) -> tuple[str, Path]:
        if self.task is None or self.shots is None:
            raise BadInputError("few-shot adaptation needs --task T and --shots FILE (3 to 20 labelled examples of T)")
        return self.task, self.shots

    def check(self, adapt: str) -> None:
        """Refuse a strategy whose flags are missing, before any model is loaded."""
        if adapt == "few-shot":
            self.few_shot_inputs()


def make_router(
    adapt: str,
    slot: ExpertSlot,
    loaded: LoadedModel,
    registry: Registry,
    options: StrategyOptions | None = None,
    on_iteration: Callable[[int, Score], None] | None = None,
) -> Router:
    """The router for `--adapt`: none, a strategy, or an expert name (`name[@version]`)."""
    options = options or StrategyOptions()
    if adapt == "none":
        return FixedRouter(BASE)
    if adapt not in STRATEGIES:
        try:
            ref = registry.resolve(adapt, loaded.slug)
        except NotFoundError as error:
            raise NotFoundError(f"--adapt takes none, {', '.join(STRATEGIES)} or an expert name: {error}") from None
        return FixedRouter(Decision(ref.spec, None, ref.manifest().task or ref.name, {}))
    bank = load_bank(registry, loaded.slug, options.experts)
    if adapt == "prompt":
        return LabelRouter(slot, loaded, bank, calibrate=options.calibrate)
    if adapt == "classifier":
        return ClassifierRouter(slot, loaded, bank, find_classifier(registry, loaded.slug, options.classifier))
    task_name, shots = options.few_shot_inputs()
    task = resolve_task(task_name)
    ref, searched = few_shot_expert(
        registry,
        slot,
        loaded.chat,
        [e.ref for e in bank.experts],
        task,
        shots,
        options.search,
        name=options.save_as,
        force=options.force,
        on_iteration=on_iteration,
    )
    manifest = ref.manifest()
    alpha = alpha_summary(recipe_from_dict(manifest.provenance["recipe"], str(ref.path)))
    note = (
        f"searched α and saved {ref.spec}" if searched else f"reused {ref.spec} (same shots and bank; --force to redo)"
    )
    return FixedRouter(Decision(ref.spec, alpha, task.name, dict(manifest.metrics)), note)


@dataclass(frozen=True)
class RoutingReport:
    """How a batch was routed: decisions per expert, and against known tasks the confusion and accuracy."""

    experts: dict[str, int]
    confusion: dict[str, dict[str, int]]  # true category -> chosen label -> count
    accuracy: float | None
    labelled: int


def routing_report(
    decisions: Sequence[Decision], tasks: Sequence[str | None], categories: Sequence[str]
) -> RoutingReport:
    """Tasks outside the categories count as `other` (the base model is the right pick for them)."""
    experts = Counter(d.expert or "base" for d in decisions)
    confusion: dict[str, dict[str, int]] = {}
    correct = labelled = 0
    for decision, task in zip(decisions, tasks, strict=True):
        if task is None:
            continue
        truth = task if task in categories else OTHER
        row = confusion.setdefault(truth, {})
        row[decision.label] = row.get(decision.label, 0) + 1
        labelled += 1
        correct += decision.label == truth
    return RoutingReport(dict(experts), confusion, correct / labelled if labelled else None, labelled)
