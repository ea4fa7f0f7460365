"""User tasks from a YAML spec: a JSONL file or a whole Hub dataset, a prompt template, an answer field and a
scorer; `columns` maps the template's names to (dotted) paths in each row, `splits` t2's splits to the dataset's."""

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
from t2cli.tasks.hubdata import dataset_records, is_whole_dataset
from t2cli.tasks.numbers import number_reward, parse_number
from t2cli.tasks.programs import extract_code, score_programs
from t2cli.tasks.registry import TASKS
from t2cli.tasks.sources import read_jsonl, resolve_data_file
from t2cli.tasks.splits import SPLITS, check_split, holdout_split

SCORERS = ("exact", "number", "choice", "regex", "code")
_REQUIRED = ("name", "description", "data", "prompt", "answer", "scorer")
_OPTIONAL = ("system", "pattern", "choices", "timeout_s", "columns", "splits")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_COLUMN = re.compile(r"\w+")
_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")  # key.key.0: mapping keys and list indices
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
    columns: tuple[tuple[str, str], ...] = ()  # (name, dotted path in a row): names for prompt/answer/choices
    splits: tuple[tuple[str, str], ...] = ()  # (t2 split, the Hub dataset's split) for a whole Hub dataset


def load_spec(path: str | Path) -> TaskSpec:
    """Read and fully validate a YAML task spec, before any data is touched."""
    path = Path(path).expanduser()
    if not path.exists():
        raise NotFoundError(f"task spec not found: {path}; pass an existing YAML file")
    raw = load_yaml(read_text_bounded(path, MAX_YAML_BYTES, what="a task spec"), f"task spec {path}")
    return parse_task_spec(raw, origin=str(path), base_dir=path.parent)


def parse_task_spec(raw: Any, *, origin: str, base_dir: Path) -> TaskSpec:
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
    columns = _check_columns(raw.get("columns", {}), origin)
    splits = _check_splits(raw.get("splits"), data, origin)
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
        columns=columns,
        splits=splits,
    )


def spec_task(spec: str | Path, workers: int | None = None) -> JsonlTask:
    """The `jsonl` task: the task a YAML spec file defines, under a name no built-in task has."""
    task_spec = load_spec(spec)
    if task_spec.name in TASKS:
        raise BadInputError(f"{spec}: name {task_spec.name!r} is a built-in task; give the spec another name")
    return JsonlTask(task_spec, workers)


class JsonlTask(FileTask):
    """A task defined by a TaskSpec. Splits of a file: "test" is the whole file; "train" and "validation" are
    a fixed seeded 90/10 cut of it. Of a whole Hub dataset: each split is the dataset's split the spec's
    `splits` names (by default the split of the same name); two t2 splits naming one dataset split share
    it as the seeded 90/10 cut."""

    def __init__(self, spec: TaskSpec, workers: int | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.description = spec.description
        self.system = spec.system
        self.workers = workers
        self._pattern = re.compile(spec.pattern) if spec.pattern else None

    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        source = source if source is not None else self.spec.data
        self.origin = None
        if is_whole_dataset(source):
            return self._hub_records(str(source), split)
        path = resolve_data_file(source, task=self.name, hint="set the spec's data field")
        return holdout_split(read_jsonl(path, limit if split == "test" else None), split, self.name)

    def _hub_records(self, url: str, split: str) -> list[Record]:
        """`split` of a whole Hub dataset, through the spec's `splits` (a split shared by two of t2's is cut)."""
        check_split(split, SPLITS, self.name)
        mapping = dict(self.spec.splits) or {name: name for name in SPLITS}
        if split not in mapping:
            raise BadInputError(
                f"task {self.name} maps no dataset split to {split!r}; add it to the spec's splits "
                f"(now {', '.join(f'{k}: {v}' for k, v in mapping.items())})"
            )
        records, self.origin = dataset_records(url, mapping[split])
        sharing = [name for name in ("train", "validation") if mapping.get(name) == mapping[split]]
        if split in sharing and len(sharing) == 2:
            return holdout_split(records, split, self.name)  # the seeded 90/10 cut, as of a file
        return records

    def field(self, record: Record, name: str) -> Any:
        """A record's value for `name`: its column's dotted path when the spec maps it, else the path `name`."""
        return lookup(record.data, dict(self.spec.columns).get(name, name))

    def to_example(self, record: Record) -> Example:
        fields = {key: str(value) for key, value in record.data.items()}
        fields |= {name: str(lookup(record.data, path)) for name, path in self.spec.columns}
        answer = self.field(record, self.spec.answer)
        choices: tuple[str, ...] = ()
        if self.spec.choices:
            listed = self.field(record, self.spec.choices)
            if isinstance(listed, (str, bytes)) or not isinstance(listed, Sequence):
                raise ValueError(f"field '{self.spec.choices}' must be a list of choice texts")
            choices = tuple(str(text) for text in listed)
            if not 2 <= len(choices) <= len(LETTERS):
                raise ValueError(f"field '{self.spec.choices}' must list 2 to {len(LETTERS)} choices")
            fields["choices"] = "\n".join(f"{LETTERS[index]}. {text}" for index, text in enumerate(choices))
        has_id = "id" in dict(self.spec.columns) or "id" in record.data
        example_id = str(self.field(record, "id")) if has_id else f"{self.name}/{record.index}"
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
            assert self._pattern is not None  # guaranteed by parse_task_spec
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


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (`solution.final`, `choices.text`, `answers.0`): mapping keys, list indices.
    KeyError when a step is missing (the record is then reported malformed, naming the path). A top-level
    field whose own name has dots is found first."""
    if isinstance(data, dict) and path in data:
        return data[path]
    value = data
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, (list, tuple)) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            raise KeyError(path)
    return value


def _check_columns(columns: Any, origin: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(columns, dict):
        raise BadInputError(f"{origin}: columns must be a mapping of name: path, e.g. {{question: problem.text}}")
    for name, path in columns.items():
        if not isinstance(name, str) or not _COLUMN.fullmatch(name):
            raise BadInputError(f"{origin}: columns: {name!r} must be a plain name (letters, digits, '_')")
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            raise BadInputError(
                f"{origin}: columns: {name} must map to a field or a dotted path such as solution.final, got {path!r}"
            )
    return tuple(columns.items())


def _check_splits(splits: Any, data: str, origin: str) -> tuple[tuple[str, str], ...]:
    if splits is None:
        return ()
    if not is_whole_dataset(data):
        raise BadInputError(
            f"{origin}: splits applies to a whole Hub dataset (data: hf://datasets/OWNER/NAME[@REV][/CONFIG]); "
            "a file's test split is the whole file and train/validation its seeded 90/10 cut"
        )
    if not isinstance(splits, dict) or not splits:
        raise BadInputError(
            f"{origin}: splits must map t2's splits to the dataset's, e.g. {{train: train, test: test}}"
        )
    for name, target in splits.items():
        if name not in SPLITS:
            raise BadInputError(f"{origin}: splits: {name!r} is not one of t2's splits ({', '.join(SPLITS)})")
        if not isinstance(target, str) or not re.fullmatch(r"[\w.-]+", target):
            raise BadInputError(f"{origin}: splits: {name} must name one split of the dataset, got {target!r}")
    return tuple(splits.items())


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
