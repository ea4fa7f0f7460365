"""User tasks from a YAML spec: a JSONL file, a prompt template, an answer field and a scorer."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError, NotFoundError
from t2cli.fsutil import read_text_bounded
from t2cli.safeyaml import MAX_YAML_BYTES, load_yaml
from t2cli.tasks.base import Example, FileTask, Record, check_pairs
from t2cli.tasks.choice import LETTERS, extract_choice
from t2cli.tasks.numbers import number_reward, parse_number
from t2cli.tasks.programs import extract_code, score_programs
from t2cli.tasks.sources import holdout_split, read_jsonl, resolve_source

SCORERS = ("exact", "number", "choice", "regex", "code")
_REQUIRED = ("name", "description", "data", "prompt", "answer", "scorer")
_OPTIONAL = ("system", "pattern", "choices", "timeout_s")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
MAX_TIMEOUT_S = 3600.0
_ANSWER_PREFIX = re.compile(r"^(?:the answer is|answer\s*:)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class TaskSpec:
    """A validated spec. `data` is resolved against the spec's folder (hf:// URLs are kept)."""

    name: str
    description: str
    data: str
    prompt: str
    answer: str
    scorer: str
    system: str | None = None
    pattern: str | None = None  # regex scorer: the first group of the last match is the answer
    choices: str | None = None  # choice scorer: a field holding the list of choice texts
    timeout_s: float = 10.0  # code scorer


def load_spec(path: str | Path) -> TaskSpec:
    """Read and fully validate a YAML task spec, before any data is touched."""
    path = Path(path).expanduser()
    if not path.exists():
        raise NotFoundError(f"task spec not found: {path}; pass an existing YAML file")
    raw = load_yaml(read_text_bounded(path, MAX_YAML_BYTES, what="a task spec"), f"task spec {path}")
    return parse_spec(raw, origin=str(path), base_dir=path.parent)


def parse_spec(raw: Any, *, origin: str, base_dir: Path) -> TaskSpec:
    if not isinstance(raw, dict):
        raise BadInputError(f"{origin}: a task spec must be a YAML mapping of fields; see the example in docs/tasks.md")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        known = ", ".join((*_REQUIRED, *_OPTIONAL))
        raise BadInputError(f"{origin}: unknown field(s) {', '.join(map(str, unknown))}; known fields: {known}")
    for key in _REQUIRED:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise BadInputError(f"{origin}: field '{key}' is required and must be a non-empty string")
    for key in ("system", "pattern", "choices"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise BadInputError(f"{origin}: field '{key}' must be a non-empty string when given")
    name, scorer = raw["name"], raw["scorer"]
    if not _NAME.fullmatch(name):
        raise BadInputError(f"{origin}: name {name!r} must be lower-case letters, digits, '_', '.' or '-'")
    if scorer not in SCORERS:
        raise BadInputError(f"{origin}: scorer {scorer!r} is not one of {', '.join(SCORERS)}; pick one of them")
    _check_template(raw["prompt"], origin)
    if (scorer == "regex") != ("pattern" in raw):
        raise BadInputError(f"{origin}: field 'pattern' is required by scorer 'regex' and allowed only there")
    if "pattern" in raw:
        _check_pattern(raw["pattern"], origin)
    if "choices" in raw and scorer != "choice":
        raise BadInputError(f"{origin}: field 'choices' is allowed only with scorer 'choice'")
    timeout = raw.get("timeout_s", 10.0)
    if "timeout_s" in raw and scorer != "code":
        raise BadInputError(f"{origin}: field 'timeout_s' is allowed only with scorer 'code'")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_TIMEOUT_S
    ):
        raise BadInputError(
            f"{origin}: timeout_s must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {timeout!r}"
        )
    data = raw["data"]
    if not data.startswith("hf://") and not Path(data).expanduser().is_absolute():
        data = str(base_dir / data)
    return TaskSpec(
        name=name,
        description=" ".join(raw["description"].split()),  # one line: routing prompts list it
        data=data,
        prompt=raw["prompt"],
        answer=raw["answer"],
        scorer=scorer,
        system=raw.get("system"),
        pattern=raw.get("pattern"),
        choices=raw.get("choices"),
        timeout_s=float(timeout),
    )


class JsonlTask(FileTask):
    """A task defined by a TaskSpec. Splits: "test" is the whole data file; "train" and "validation" are
    a fixed seeded 90/10 cut of it."""

    def __init__(self, spec: TaskSpec, workers: int | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.description = spec.description
        self.system = spec.system
        self.workers = workers
        self._pattern = re.compile(spec.pattern) if spec.pattern else None

    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        path = resolve_source(
            source if source is not None else self.spec.data, task=self.name, hint="set the spec's data field"
        )
        return holdout_split(read_jsonl(path, limit if split == "test" else None), split, self.name)

    def to_example(self, record: Record) -> Example:
        fields = {key: str(value) for key, value in record.data.items()}
        answer = record.data[self.spec.answer]
        choices: tuple[str, ...] = ()
        if self.spec.choices:
            choices = tuple(str(text) for text in record.data[self.spec.choices])
            if not 2 <= len(choices) <= len(LETTERS):
                raise ValueError(f"field '{self.spec.choices}' must list 2 to {len(LETTERS)} choices")
            fields["choices"] = "\n".join(f"{LETTERS[index]}. {text}" for index, text in enumerate(choices))
        example_id = str(record.data.get("id", f"{self.name}/{record.index}"))
        question = self.spec.prompt.format_map(fields)
        if self.spec.scorer == "choice":
            index = _choice_index(answer, choices)
            return Example(example_id, question, LETTERS[index], choices, index)
        if self.spec.scorer == "number" and parse_number(str(answer)) is None:
            raise ValueError(f"answer {answer!r} is not a number")
        return Example(example_id, question, str(answer))

    def score(self, example: Example, completion: str) -> float:
        scorer = self.spec.scorer
        if scorer == "code":
            return self.score_many([example], [completion])[0]
        if scorer == "number":
            return number_reward(completion, example.reference)
        if scorer == "choice":
            count = len(example.choices) or len(LETTERS)
            return 1.0 if extract_choice(completion, count, example.choices) == example.answer_index else -1.0
        if scorer == "regex":
            assert self._pattern is not None  # guaranteed by parse_spec
            matches = list(self._pattern.finditer(completion))
            completion = (matches[-1].group(1) or "") if matches else ""
        return 1.0 if _normalise(completion) == _normalise(example.reference) else -1.0

    def score_many(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        if self.spec.scorer != "code":
            return super().score_many(examples, completions)
        check_pairs(examples, completions)
        programs = [
            f"{extract_code(completion)}\n\n{example.reference}\n"
            for example, completion in zip(examples, completions, strict=True)
        ]
        return score_programs(programs, timeout_s=self.spec.timeout_s, workers=self.workers)


def _check_template(template: str, origin: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise BadInputError(
            f"{origin}: prompt is not a valid template ({error}); write {{{{ and }}}} for literal braces"
        ) from None
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if not re.fullmatch(r"\w+", field_name) or format_spec or conversion:
            raise BadInputError(
                f"{origin}: prompt placeholder {{{field_name}}} must be a plain field name such as {{question}}"
            )


def _check_pattern(pattern: str, origin: str) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise BadInputError(f"{origin}: pattern is not a valid regular expression ({error}); fix it") from None
    if compiled.groups < 1:
        raise BadInputError(f"{origin}: pattern needs a (group) capturing the answer, e.g. 'Answer: (\\w+)'")


def _choice_index(answer: Any, choices: tuple[str, ...]) -> int:
    count = len(choices) or len(LETTERS)
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < count:
        return answer
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in LETTERS[:count]:
        return LETTERS.index(text.upper())
    if text in choices:
        return choices.index(text)
    raise ValueError(f"answer {answer!r} is not a choice letter, index or choice text")


def _normalise(text: str) -> str:
    """Lower case, single spaces, no "Answer:" prefix, no surrounding quotes, markup or final period."""
    text = _ANSWER_PREFIX.sub("", " ".join(text.split()).lower())
    return text.strip(" \"'`*").rstrip(".!").strip(" \"'`*")
