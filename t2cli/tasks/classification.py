"""The `cls` task: which task does a request belong to? Trains and evaluates routing (dispatch).

Its examples are requests as users send them. A classifier trained on the tasks' templated prompts
learns the templates ("Answer with the letter…", "You are an expert Python programmer…") and misroutes
the bare questions users actually send. So a request here is a task example's `raw_request` (no
template, no instruction), wrapped in one of a few phrasings that every category shares (so the
phrasing tells nothing), and for a multiple-choice task shown with or without its choices. The
`other` category holds hand-written requests (chit-chat, opinions, advice, general knowledge;
`other_requests.txt`, none from a benchmark) whose right expert is none. Each split comes from the
tasks' own split (the `other` list is cut 60/20/20, seeded), so validation and test requests are never
training items.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from t2cli.errors import BadInputError
from t2cli.tasks.base import Example, Record, Task
from t2cli.tasks.choice import LETTERS
from t2cli.tasks.splits import seeded_cut

OTHER = "other"
OTHER_DESCRIPTION = "anything else, such as chit-chat, opinions or general knowledge"
OTHER_SHARES = {"train": 0.6, "validation": 0.2, "test": 0.2}
# Training requests per category: the tasks' large training splits are used well beyond the 90
# `other` requests, which come round again in fresh wrappers to keep the classes balanced.
TRAIN_REQUESTS_PER_CATEGORY = 500

# How a user may put a request; every category is phrased with the same wrappers.
WRAPPERS = (
    "{request}",
    "{request}",
    "Q: {request}",
    "Question: {request}",
    "Can you help: {request}",
    "Please help me with this.\n\n{request}",
    "{request}\n\nThanks!",
    "Quick one: {request}",
)
CHOICE_FORMATS = ("{letter}. {text}", "({letter}) {text}", "{letter}) {text}")


@dataclass(frozen=True)
class RoutingRequest:
    """One request and the category that should answer it (a task name, or `other`)."""

    id: str
    category: str
    text: str


@dataclass(frozen=True)
class BareRequest:
    """A request before it is phrased: a task example's raw question (with its choices), or an `other` one."""

    id: str
    category: str
    text: str
    choices: tuple[str, ...] = ()

    def phrased(self, rng: random.Random, round_: int = 1) -> RoutingRequest:
        """The request in a random wrapper; its `round_`-th time round gets the id suffix `#round_`."""
        suffix = "" if round_ == 1 else f"#{round_}"
        return RoutingRequest(f"{self.id}{suffix}", self.category, phrase(self.text, self.choices, rng))


def other_requests(split: str) -> list[str]:
    """The packaged `other` requests of one split of their fixed 60/20/20 seeded cut."""
    text = resources.files("t2cli.tasks").joinpath("other_requests.txt").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    records = [Record({"text": line}, index, f"other_requests.txt:{index + 1}") for index, line in enumerate(lines)]
    return [record.data["text"] for record in seeded_cut(records, split, OTHER_SHARES, OTHER)]


def phrase(request: str, choices: Sequence[str], rng: random.Random) -> str:
    """`request` as a user might send it: in a random wrapper, its choices (if any) listed or not."""
    if choices and rng.random() < 0.5:
        shape = rng.choice(CHOICE_FORMATS)
        listing = "\n".join(shape.format(letter=LETTERS[i], text=text) for i, text in enumerate(choices))
        request = f"{request}\n\n{listing}"
    return rng.choice(WRAPPERS).format(request=request.strip())


def routing_requests(
    tasks: Sequence[Task],
    sources: Mapping[str, str | Path | None] | None = None,
    split: str = "train",
    seed: int = 0,
    limit: int | None = None,
    per_category: int | None = None,
    fill: bool = False,
) -> list[RoutingRequest]:
    """Seeded requests of `split`, shuffled: balanced (the same number per category — the tasks, then
    `other` — at most `limit` in all), or with `per_category`, up to that many of each category.

    With `fill`, every category gets exactly `per_category`: a smaller category's requests come round
    again, each time in a fresh wrapper (their ids end `#2`, `#3`, …), so a large task's data is not cut
    to the size of the smallest category and the classes stay balanced."""
    if limit is not None and limit < 0:
        raise BadInputError(f"limit must be >= 0, got {limit}; pass a non-negative --limit")
    if fill and per_category is None:
        raise BadInputError("fill needs per_category, the number of requests each category gets")
    rng = random.Random(f"routing:{seed}:{split}")
    sources = sources or {}
    bare = [
        [
            BareRequest(f"{task.name}/{e.id}", task.name, task.raw_request(e), tuple(e.choices))
            for e in task.load(sources.get(task.name), split)
        ]
        for task in tasks
    ]
    bare.append([BareRequest(f"{OTHER}/{split}-{n}", OTHER, text) for n, text in enumerate(other_requests(split))])
    pools = [[request.phrased(rng) for request in pool] for pool in bare]
    if fill:
        # A smaller category goes round its requests again, in order, each time in a fresh wrapper.
        pools = [
            pool + [group[i % len(group)].phrased(rng, i // len(group) + 2) for i in range(per_category - len(pool))]
            if group
            else pool
            for pool, group in zip(pools, bare, strict=True)
        ]
    counts = [min(len(pool) for pool in pools)] * len(pools)
    if per_category is not None:
        counts = [min(len(pool), per_category) for pool in pools]
    if limit is not None:
        share, extra = divmod(limit, len(pools))
        counts = [min(count, share + (index < extra)) for index, count in enumerate(counts)]
    picked = [request for pool, count in zip(pools, counts, strict=True) for request in rng.sample(pool, count)]
    rng.shuffle(picked)
    return picked


def request_lines(requests: Sequence[RoutingRequest]) -> list[dict[str, str]]:
    """Prompt lines for `t2 dispatch`/`t2 run` (their `task` field is what the routing is checked against)."""
    return [{"id": r.id, "prompt": r.text, "task": r.category} for r in requests]


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
    """Each example is a request as a user would send it (`routing_requests`): a member task's
    bare question, or an `other` request whose right expert is none; its reference is the category.
    Sampling is balanced (the same number from every category) and seeded; validation and test
    requests come from the members' held-out splits."""

    name = "cls"
    description = "deciding which kind of task a request is"

    def __init__(
        self, tasks: Sequence[Task], sources: Mapping[str, str | Path | None] | None = None, seed: int = 0
    ) -> None:
        names = [task.name for task in tasks]
        if len(names) < 2 or len(set(names)) != len(names):
            raise BadInputError(f"cls needs at least two different tasks, got {names}; pass distinct task names")
        if OTHER in names:
            raise BadInputError(f"a cls task is named {OTHER!r}, the category of everything else; rename it")
        unknown = sorted(set(sources or {}) - set(names))
        if unknown:
            raise BadInputError(f"sources given for {unknown}, which are not among the cls tasks {names}")
        self.tasks = list(tasks)
        self.sources = dict(sources or {})
        self.seed = seed
        self.categories = [(task.name, task.description) for task in self.tasks] + [(OTHER, OTHER_DESCRIPTION)]

    def load(self, source: str | Path | None = None, split: str = "test", limit: int | None = None) -> list[Example]:
        if source is not None:
            raise BadInputError(
                "cls builds its examples from its member tasks; give their data as sources={task: path}"
            )
        names = [name for name, _ in self.categories]
        return [
            Example(
                id=request.id,
                question=classification_messages(request.text, self.categories)[-1]["content"],
                reference=request.category,
                choices=tuple(names),
                answer_index=names.index(request.category),
                meta={"request": request.text},
            )
            for request in self.requests(split, limit)
        ]

    def requests(self, split: str, limit: int | None = None) -> list[RoutingRequest]:
        """The split's requests: training fills every category to `TRAIN_REQUESTS_PER_CATEGORY`; validation
        and test stay balanced at the smallest category's size, each request once."""
        if split == "train":
            return routing_requests(
                self.tasks, self.sources, split, self.seed, limit, per_category=TRAIN_REQUESTS_PER_CATEGORY, fill=True
            )
        return routing_requests(self.tasks, self.sources, split, self.seed, limit)

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
