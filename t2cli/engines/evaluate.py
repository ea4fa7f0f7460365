"""Scoring an engine (with whatever expert it holds) on a task's examples.

Three modes:
- `generate`: greedy generation scored by the task's reward (every task);
- `choices`: multiple choice read from the next-token probabilities of the choice letters;
- `likelihood`: multiple choice by the log-likelihood of each choice's text (no generation).

The score is the mean of (reward + 1) / 2, i.e. accuracy for ±1 rewards, in [0, 1].
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2cli.engines.base import Engine, Prompt, Sampling
from t2cli.errors import BadInputError
from t2cli.fsutil import write_jsonl
from t2cli.tasks.base import Example, Task

if TYPE_CHECKING:
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.files import Expert
    from t2cli.models.loading import LoadedModel

MODES = ("generate", "choices", "likelihood")


@dataclass(frozen=True)
class ItemResult:
    """One example's outcome, as written to the per-example JSONL."""

    id: str
    completion: str
    reward: float
    pick: int | None = None


@dataclass
class EvalResult:
    task: str
    label: str
    mode: str
    n: int
    score: float
    generated_tokens: int
    seconds: float
    items: list[ItemResult] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "expert": self.label,
            "mode": self.mode,
            "n": self.n,
            "score": round(self.score, 4),
            "generated_tokens": self.generated_tokens,
            "seconds": round(self.seconds, 2),
            "tokens_per_s": round(self.tokens_per_second, 1),
        }


def prompt_for(task: Task, example: Example, chat: bool) -> Prompt:
    """What the model is asked: the task's chat messages, or its plain prompt for base models and for
    tasks whose prompt style is plain text."""
    return task.messages(example) if chat and task.uses_chat_template else task.plain_prompt(example)


def _require_choices(task: Task, examples: Sequence[Example], mode: str) -> None:
    if not all(e.choices and e.answer_index is not None for e in examples):
        raise BadInputError(f"mode {mode!r} needs a multiple-choice task and {task.name!r} is not one; use generate")


def choice_picks(engine: Any, task: Task, examples: Sequence[Example], prompts: Sequence[Prompt]) -> list[int]:
    """The most likely answer label (A, B, … or the task's own) for each example: one prefill per label set."""
    picks = [0] * len(examples)
    by_labels: dict[tuple[str, ...], list[int]] = {}
    for index, example in enumerate(examples):
        by_labels.setdefault(task.choice_labels(example), []).append(index)
    for labels, indices in by_labels.items():
        scores = engine.label_logprobs([prompts[i] for i in indices], labels)
        for index, row in zip(indices, scores, strict=True):
            picks[index] = int(row.argmax())
    return picks


def choice_continuation(text: str) -> str:
    """How a choice's text follows the prompt when it is scored as the answer."""
    return f" {text}"


def likelihood_picks(engine: Engine, task: Task, examples: Sequence[Example], prompts: Sequence[Prompt]) -> list[int]:
    """The choice whose text is most likely as the answer, all choices scored in one batch."""
    pairs = [
        (i, prompt, choice_continuation(text))
        for i, (e, prompt) in enumerate(zip(examples, prompts, strict=True))
        for text in e.choices
    ]
    scores = engine.score([p for _, p, _ in pairs], [c for _, _, c in pairs])
    best: dict[int, tuple[float, int]] = {}
    position = 0
    for index, example in enumerate(examples):
        for choice in range(len(example.choices)):
            if index not in best or scores[position] > best[index][0]:
                best[index] = (scores[position], choice)
            position += 1
    return [best[i][1] for i in range(len(examples))]


def evaluate(
    engine: Engine,
    task: Task,
    examples: Sequence[Example],
    *,
    chat: bool,
    mode: str = "generate",
    max_new_tokens: int = 256,
    label: str = "base",
) -> EvalResult:
    """Score the engine as it stands (its current expert) on the examples."""
    if mode not in MODES:
        raise BadInputError(f"unknown eval mode {mode!r}; use one of {', '.join(MODES)}")
    if not examples:
        raise BadInputError(f"no examples to evaluate for task {task.name!r}; check --data, --split and --limit")
    prompts = [prompt_for(task, e, chat) for e in examples]
    started = time.perf_counter()
    tokens = 0
    if mode == "generate":
        generations = engine.generate(prompts, Sampling(max_new_tokens=max_new_tokens))
        rewards = task.score_many(examples, [g.text for g in generations])
        tokens = sum(len(g.token_ids) for g in generations)
        items = [ItemResult(e.id, g.text, r) for e, g, r in zip(examples, generations, rewards, strict=True)]
    else:
        _require_choices(task, examples, mode)
        picks = (choice_picks if mode == "choices" else likelihood_picks)(engine, task, examples, prompts)
        items = [
            ItemResult(e.id, task.choice_labels(e)[p], 1.0 if p == e.answer_index else -1.0, p)
            for e, p in zip(examples, picks, strict=True)
        ]
    seconds = time.perf_counter() - started
    score = sum((item.reward + 1) / 2 for item in items) / len(items)
    return EvalResult(task.name, label, mode, len(items), score, tokens, seconds, items)


def evaluate_experts(
    slot: ExpertSlot,
    task: Task,
    examples: Sequence[Example],
    experts: Sequence[str | None],
    *,
    mode: str = "generate",
    max_new_tokens: int = 256,
) -> list[EvalResult]:
    """The same examples under each expert spec (None: the base model), side by side; the slot ends
    on the base weights."""
    results = []
    try:
        for spec in experts:
            with slot.holding(spec) as runner:
                results.append(
                    evaluate(
                        runner,
                        task,
                        examples,
                        chat=slot.loaded.chat,
                        mode=mode,
                        max_new_tokens=max_new_tokens,
                        label=spec or "base",
                    )
                )
    finally:
        slot.hold(None)
    return results


def write_items(path: Path, results: Sequence[EvalResult]) -> None:
    """Per-example JSONL (one line per example and expert), written atomically. `score` is (reward + 1) / 2,
    in [0, 1], the field `t2 run` rows carry; `reward` stays for older readers."""
    write_jsonl(
        path,
        (
            {"task": r.task, "expert": r.label, "mode": r.mode, **asdict(item), "score": (item.reward + 1) / 2}
            for r in results
            for item in r.items
        ),
    )


def compare_export(
    loaded: LoadedModel,
    expert: Expert,
    exported: LoadedModel,
    task: Task,
    examples: Sequence[Example],
    mode: str,
) -> list[EvalResult]:
    """Base, exact expert and exported folder on the same items (`t2 export --eval`), each on an engine that
    runs the model object given (an export loaded through PEFT or from its folder)."""
    from t2cli.engines import AUTO, make_engine

    engine = make_engine(AUTO, loaded, in_place=True)
    results = [evaluate(engine, task, examples, chat=loaded.chat, mode=mode, label="base")]
    engine.set_expert(expert.z, expert.manifest.svf_rule)
    try:
        results.append(evaluate(engine, task, examples, chat=loaded.chat, mode=mode, label="exact"))
    finally:
        engine.set_expert(None)
    on_export = make_engine(AUTO, exported, in_place=True)
    results.append(evaluate(on_export, task, examples, chat=loaded.chat, mode=mode, label="exported"))
    return results


def gain_retained(results: Sequence[EvalResult]) -> float | None:
    """(exported − base) / (exact − base) of `compare_export`: the share of the expert's gain the export keeps."""
    base, exact, exported = (r.score for r in results)
    return (exported - base) / (exact - base) if exact != base else None
