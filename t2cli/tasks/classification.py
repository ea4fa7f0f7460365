"""The `cls` task: which task does a request belong to? Trains and evaluates routing (dispatch)."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from t2cli.errors import BadInputError
from t2cli.tasks.base import Example, Task


def classification_messages(question: str, categories: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Chat messages asking which of `categories` ((name, description) pairs) `question` belongs to."""
    listing = "\n".join(f"- {name}: {description}" for name, description in categories)
    content = (
        f"Classify the request below into exactly one of these categories:\n{listing}\n\n"
        f"Request:\n{question}\n\n"
        "Do not answer the request. Reply only with the category name, in the form: Category: NAME"
    )
    return [{"role": "user", "content": content}]


def classification_plain_prompt(request: str, categories: Sequence[tuple[str, str]]) -> str:
    """The same question for a model without a chat template, ending in the task's answer cue."""
    return f"{classification_messages(request, categories)[-1]['content']}\n{ClassificationTask.answer_cue}"


def classification_prompt(
    request: str, categories: Sequence[tuple[str, str]], *, chat: bool
) -> list[dict[str, str]] | str:
    """What a `cls` expert is asked about `request`, exactly as `ClassificationTask` trains it."""
    return classification_messages(request, categories) if chat else classification_plain_prompt(request, categories)


def extract_label(completion: str, names: Sequence[str]) -> str | None:
    r"""The category a completion names: after "Category:", "Label:", "Answer:" or in \boxed{} (several
    different ones: none), else the only category name it mentions, else None."""
    by_key = {name.lower(): name for name in names}
    alternatives = "|".join(re.escape(name) for name in sorted(by_key, key=len, reverse=True))
    if not alternatives:
        return None
    word = rf"(?<![\w-])(?P<name>{alternatives})(?![\w-])"
    explicit = {
        by_key[match["name"].lower()]
        for match in re.finditer(
            rf"(?:\b(?:category|label|answer)\b(?:\s+is)?\s*[:=]?\s*[*\"'`]*\s*|\\boxed\{{\s*){word}",
            completion,
            re.IGNORECASE,
        )
    }
    if explicit:
        return explicit.pop() if len(explicit) == 1 else None
    mentioned = {by_key[match["name"].lower()] for match in re.finditer(word, completion, re.IGNORECASE)}
    return mentioned.pop() if len(mentioned) == 1 else None


class ClassificationTask(Task):
    """Each example is a member task's question; its reference is that task's name. Sampling is balanced
    (the same number from every task) and seeded."""

    name = "cls"
    description = "deciding which kind of task a request is"

    def __init__(
        self, tasks: Sequence[Task], sources: Mapping[str, str | Path | None] | None = None, seed: int = 0
    ) -> None:
        names = [task.name for task in tasks]
        if len(names) < 2 or len(set(names)) != len(names):
            raise BadInputError(f"cls needs at least two different tasks, got {names}; pass distinct task names")
        unknown = sorted(set(sources or {}) - set(names))
        if unknown:
            raise BadInputError(f"sources given for {unknown}, which are not among the cls tasks {names}")
        self.tasks = list(tasks)
        self.sources = dict(sources or {})
        self.seed = seed
        self.categories = [(task.name, task.description) for task in self.tasks]

    def load(self, source: str | Path | None = None, split: str = "test", limit: int | None = None) -> list[Example]:
        if source is not None:
            raise BadInputError(
                "cls builds its examples from its member tasks; give their data as sources={task: path}"
            )
        if limit is not None and limit < 0:
            raise BadInputError(f"limit must be >= 0, got {limit}; pass a non-negative --limit")
        pools = [task.load(self.sources.get(task.name), split) for task in self.tasks]
        per_task = [min(len(pool) for pool in pools)] * len(pools)
        if limit is not None:
            share, extra = divmod(limit, len(pools))
            per_task = [min(count, share + (index < extra)) for index, count in enumerate(per_task)]
        rng = random.Random(self.seed)
        picked = [
            (task, example)
            for task, pool, count in zip(self.tasks, pools, per_task, strict=True)
            for example in rng.sample(pool, count)
        ]
        rng.shuffle(picked)
        names = [name for name, _ in self.categories]
        return [
            Example(
                id=f"{task.name}/{example.id}",
                question=classification_messages(example.question, self.categories)[-1]["content"],
                reference=task.name,
                choices=tuple(names),
                answer_index=names.index(task.name),
                meta={"request": example.question},
            )
            for task, example in picked
        ]

    def messages(self, example: Example) -> list[dict[str, str]]:
        return classification_messages(example.meta["request"], self.categories)

    def plain_prompt(self, example: Example) -> str:
        return classification_plain_prompt(example.meta["request"], self.categories)

    def score(self, example: Example, completion: str) -> float:
        label = extract_label(completion, [name for name, _ in self.categories])
        return 1.0 if label == example.reference else -1.0

    def reference_completion(self, example: Example) -> str:
        return f"Category: {example.reference}"

    def choice_labels(self, example: Example) -> tuple[str, ...]:
        """The answer is the category's own name, so a router reads the names' next-token probabilities."""
        return example.choices
