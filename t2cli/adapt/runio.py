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
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2cli.engines.base import Prompt, question_text
from t2cli.engines.context import chars_problem
from t2cli.errors import BadInputError, NotFoundError
from t2cli.fsutil import (
    JsonProblem,
    canonical_json,
    json_loads,
    jsonl_line,
    lenient_rows,
    open_text_lines,
    write_jsonl,
)
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
    return line_from_data(data, number)


def line_from_data(data: Any, number: int) -> InputLine | LineProblem:
    """Validate one parsed line (`t2 run`'s JSONL, or a `t2 serve` request) into an InputLine."""
    if not isinstance(data, dict):
        return LineProblem(number, f"expected a JSON object, got {type(data).__name__}")
    if "prompt" in data and "messages" in data:
        return LineProblem(number, "has both `prompt` and `messages`; keep one")
    if "prompt" in data:
        if not isinstance(data["prompt"], str) or not data["prompt"].strip():
            return LineProblem(number, "`prompt` must be a non-empty string")
        # A request to an instruct model: its chat template wraps it (base models see the text as is).
        prompt: Prompt = [{"role": "user", "content": data["prompt"]}]
    elif "messages" in data:
        problem = _messages_problem(data["messages"])
        if problem:
            return LineProblem(number, problem)
        prompt = [dict(m) for m in data["messages"]]
    else:
        return LineProblem(number, "has neither `prompt` nor `messages`")
    too_long = chars_problem(prompt)
    return LineProblem(number, too_long) if too_long else InputLine(number, data, prompt)


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


def check_output(output: Path | None, prompts: Path, *, journal: bool = True) -> None:
    """Refuse, before any model loads, an output path that is a folder, a device, FIFO or socket (its final
    rename would replace it with a regular file, resume would read it without end) or would overwrite
    the prompts file; with `journal`, also a resume journal that is a link or not a regular file, since
    rows are appended to it."""
    if output is None:
        return
    output = Path(output)
    if output.is_dir():
        raise BadInputError(f"-o {output} is a folder; pass a file path such as {output / 'answers.jsonl'}")
    if output.exists() and not output.is_file():
        raise BadInputError(
            f"-o {output} is a device, FIFO or socket, not a regular file; pass a file path, or leave out -o "
            "to write to stdout"
        )
    written = [output]
    if journal:
        written.append(Journal(output).path)
        check_journal(Journal(output).path)
    for path in written:
        if path.resolve() == Path(prompts).resolve() or (path.exists() and _same_file(path, Path(prompts))):
            raise BadInputError(f"-o {output} would overwrite the prompts file {prompts}; write to another file")


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.samefile(other)
    except OSError:
        return False


def check_journal(path: Path) -> None:
    """A resume journal must be absent or a regular file of its own: never a symlink, a hard link (rows
    would be appended to the file it shares) or a device."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    _refuse_journal(path, info)


def _refuse_journal(path: Path, info: os.stat_result) -> None:
    if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
        return
    if stat.S_ISLNK(info.st_mode):
        kind = "a symbolic link"
    elif stat.S_ISREG(info.st_mode):
        kind = "a hard link to another file"
    else:
        kind = "not a regular file"
    raise BadInputError(
        f"{path} (the resume journal of -o) is {kind}; t2 appends rows to it, so remove it and run again"
    )


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


def read_rows(path: Path, *, follow: bool = True) -> Iterable[dict[str, Any]]:
    """The JSON objects of an output or journal file; a torn, foreign, over-long or hostile line (deep
    nesting, a 5,000-digit number, bad UTF-8) is skipped. A device or FIFO is a BadInputError, never read."""
    return lenient_rows(path, follow=follow)


class Journal:
    """Finished output lines of a run in progress, beside the output file (`OUT.partial`)."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        self.path = self.output.with_name(self.output.name + JOURNAL_SUFFIX)

    def finished(self) -> dict[tuple[int, str], dict[str, Any]]:
        """Reusable rows by (line, key), from a previous output file and then the journal."""
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        for source, follow in ((self.output, True), (self.path, False)):
            for row in read_rows(source, follow=follow):
                if isinstance(row.get("line"), int) and isinstance(row.get("key"), str) and "completion" in row:
                    rows[(row["line"], row["key"])] = row
        return rows

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add finished rows durably, so a kill right after loses none of them."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError:
            check_journal(self.path)  # a symlink (O_NOFOLLOW) or a FIFO without a reader: say which
            raise
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            _refuse_journal(self.path, os.fstat(fd))  # checked on the very file opened, so no swap can slip by
            handle.write("".join(jsonl_line(row) for row in rows))
            handle.flush()
            os.fsync(handle.fileno())

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def commit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write the complete output atomically, then drop the journal."""
        write_jsonl(self.output, rows)
        self.discard()
