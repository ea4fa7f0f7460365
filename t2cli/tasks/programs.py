"""Code tasks: pull the program out of a completion and reward it by running tests in the sandbox."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence

from t2cli.errors import EngineError
from t2cli.sandbox import run_many
from t2cli.tasks.base import Example, FileTask, check_pairs

_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n(?P<code>.*?)(?:^[ \t]*```|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = ("", "python", "py", "python3")


def extract_code(completion: str) -> str:
    """The Python code of a completion: the text before a lone closing fence when it parses (the prompt
    opened the block), else the first fenced python block that defines a function (else the first python
    block), else the whole completion."""
    before, fence, after = completion.partition("```")
    if fence and _parses(before) and after.count("```") % 2 == 0 and re.match(r"[ \t]*(\n|$)", after):
        return before
    blocks = [match["code"] for match in _FENCE.finditer(completion) if match["lang"].lower() in _PYTHON_TAGS]
    if blocks:
        return next((block for block in blocks if re.search(r"^\s*def ", block, re.MULTILINE)), blocks[0])
    return completion


def _parses(code: str) -> bool:
    if not code.strip():
        return False
    try:
        compile(code, "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def score_programs(programs: Sequence[str], *, timeout_s: float, workers: int | None) -> list[float]:
    """+1 for each program that exits cleanly in the sandbox, -1 otherwise."""
    results = run_many(programs, workers=workers, timeout_s=timeout_s)
    broken = next((result for result in results if result.status == "error"), None)
    if broken is not None:
        reason = broken.stderr.strip().splitlines()[-1] if broken.stderr.strip() else "no message"
        raise EngineError(f"the code sandbox could not run a program ({reason}); see docs/sandbox.md")
    return [1.0 if result.passed else -1.0 for result in results]


class CodeTask(FileTask):
    """A task scored by executing the completion's code against tests (+1 all pass, -1 otherwise)."""

    answer_cue = "```python\n"

    def __init__(self, timeout_s: float = 10.0, workers: int | None = None) -> None:
        self.timeout_s = timeout_s
        self.workers = workers

    @abstractmethod
    def program(self, example: Example, completion: str) -> str:
        """The test script for one completion: its code followed by the example's tests."""

    def score(self, example: Example, completion: str) -> float:
        return self.score_many([example], [completion])[0]

    def score_many(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        check_pairs(examples, completions)
        programs = [
            self.program(example, completion) for example, completion in zip(examples, completions, strict=True)
        ]
        return score_programs(programs, timeout_s=self.timeout_s, workers=self.workers)
