"""Run I/O: prompt lines in, output lines out, and the journal that lets an interrupted run resume.

Input is JSONL, one object a line: `{"id"?: ..., "prompt": "..." | "messages": [...], "task"?: "gsm8k", ...}`.
A line that is not a JSON object or has no usable `prompt`/`messages` is a `LineProblem`, reported by
its line number. Output lines are the input fields plus `expert`, `alpha`, `completion`, `score` and
`reference` (when the line's task can score it), `line` (its input line number) and `key`.

`key` is the sha256 of the input line's content and of the run's settings (strategy, bank, model
fingerprint, sampling...). A resumed run reuses a finished output only when both its line number and
its key match, so outputs of another input file, an edited line or other settings never mix in.

While a run is going, finished lines are appended to the journal `OUT.partial` (flushed and fsynced
per chunk); the output file itself is only ever written whole, in input order, in one atomic rename,
so it is valid JSONL at all times. A killed run leaves the journal; the next run reads it (and any
previous output file) and generates only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2cli.engines.base import Prompt, question_text
from t2cli.errors import BadInputError, NotFoundError
from t2cli.fsutil import JsonProblem, canonical_json, json_loads, jsonl_line, open_text_lines, write_jsonl
from t2cli.tasks.base import Example, FileTask, Record, Task
from t2cli.tasks.registry import get_task

JOURNAL_SUFFIX = ".partial"
_ROLES = ("system", "user", "assistant")
_RUN_FIELDS = ("prompt", "messages", "task")


@dataclass(frozen=True)
class InputLine:
    """One valid prompt line: its 1-based line number, its fields, and the prompt it asks."""

    number: int
    data: dict[str, Any]
    prompt: Prompt

    @property
    def task(self) -> str | None:
        task = self.data.get("task")
        return task if isinstance(task, str) else None


@dataclass(frozen=True)
class LineProblem:
    """A malformed input line, skipped (or, with --strict, fatal)."""

    number: int
    message: str

    def describe(self, source: str | Path) -> str:
        return f"{source}:{self.number}: {self.message}"


def parse_line(text: str, number: int) -> InputLine | LineProblem:
    """Validate one JSONL line into an InputLine, or say what is wrong with it."""
    try:
        data = json_loads(text)
    except JsonProblem as error:
        return LineProblem(number, str(error))
    if not isinstance(data, dict):
        return LineProblem(number, f"expected a JSON object, got {type(data).__name__}")
    if "prompt" in data and "messages" in data:
        return LineProblem(number, "has both `prompt` and `messages`; keep one")
    if "prompt" in data:
        if not isinstance(data["prompt"], str) or not data["prompt"].strip():
            return LineProblem(number, "`prompt` must be a non-empty string")
        # A request to an instruct model: its chat template wraps it (base models see the text as is).
        return InputLine(number, data, [{"role": "user", "content": data["prompt"]}])
    if "messages" in data:
        problem = _messages_problem(data["messages"])
        if problem:
            return LineProblem(number, problem)
        return InputLine(number, data, [dict(m) for m in data["messages"]])
    return LineProblem(number, "has neither `prompt` nor `messages`")


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "`messages` must be a non-empty list of {role, content} objects"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return f"messages[{i}] must be an object with a string `content`"
        if message.get("role") not in _ROLES:
            return f"messages[{i}] has role {message.get('role')!r}; use one of {', '.join(_ROLES)}"
    if messages[-1]["role"] != "user":
        return "the last message must be the user's"
    return None


def read_inputs(path: Path) -> tuple[list[InputLine], list[LineProblem]]:
    """The valid lines of a prompts file and the problems of the others; blank lines are skipped."""
    lines: list[InputLine] = []
    problems: list[LineProblem] = []
    if not Path(path).exists():
        raise NotFoundError(f"prompts file not found: {path}; pass an existing JSONL file")
    try:
        with open_text_lines(path) as handle:
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                parsed = parse_line(text, number)
                (lines if isinstance(parsed, InputLine) else problems).append(parsed)
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"{path}: cannot read it as UTF-8 JSONL ({error}); pass a .jsonl file") from None
    return lines, problems


def check_output(output: Path | None, prompts: Path) -> None:
    """Refuse an output path that is a folder or would overwrite the prompts file, before any model loads."""
    if output is None:
        return
    output = Path(output)
    if output.is_dir():
        raise BadInputError(f"-o {output} is a folder; pass a file path such as {output / 'answers.jsonl'}")
    journal = Journal(output).path
    for written in (output, journal):
        if written.resolve() == Path(prompts).resolve():
            raise BadInputError(f"-o {output} would overwrite the prompts file {prompts}; write to another file")


def line_key(line: InputLine, identity: Mapping[str, Any]) -> str:
    """sha256 of the line's content and of the settings that shape its output."""
    return hashlib.sha256(canonical_json({"input": line.data, "run": identity}).encode()).hexdigest()


def example_for(line: InputLine, tasks: dict[str, Task | None]) -> tuple[Task, Example] | None:
    """The line as an example of its `task`, when that task knows it and the line has its reference fields.

    The line's other fields are read in the task's own format (gsm8k: `answer`; arc: `question` +
    `answerKey`; mbpp: `text`, `code`, `test_list`), with `question` defaulting to the prompt's text.
    `tasks` caches task objects by name (None: not a task that can score on its own, e.g. unknown).
    """
    name = line.task
    if name is None:
        return None
    if name not in tasks:
        try:
            task = get_task(name)
        except (BadInputError, NotFoundError):
            task = None
        tasks[name] = task if isinstance(task, FileTask) else None
    task = tasks[name]
    if task is None:
        return None
    # The run's own fields are not the task's: MBPP+ records, for one, have a `prompt` of their own.
    fields = {key: value for key, value in line.data.items() if key not in _RUN_FIELDS}
    record = Record({"question": question_text(line.prompt), **fields}, line.number - 1, f"line {line.number}")
    try:
        return task, task.to_example(record)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def read_rows(path: Path) -> Iterable[dict[str, Any]]:
    """The JSON objects of an output or journal file; a torn or foreign line is skipped."""
    try:
        with path.open(encoding="utf-8") as handle:
            for text in handle:
                try:
                    row = json.loads(text)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict):
                    yield row
    except FileNotFoundError:
        return


class Journal:
    """Finished output lines of a run in progress, beside the output file (`OUT.partial`)."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        self.path = self.output.with_name(self.output.name + JOURNAL_SUFFIX)

    def finished(self) -> dict[tuple[int, str], dict[str, Any]]:
        """Reusable rows by (line, key), from a previous output file and then the journal."""
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        for source in (self.output, self.path):
            for row in read_rows(source):
                if isinstance(row.get("line"), int) and isinstance(row.get("key"), str) and "completion" in row:
                    rows[(row["line"], row["key"])] = row
        return rows

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add finished rows durably, so a kill right after loses none of them."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(jsonl_line(row) for row in rows))
            handle.flush()
            os.fsync(handle.fileno())

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def commit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write the complete output atomically, then drop the journal."""
        write_jsonl(self.output, rows)
        self.discard()
