"""The task protocol: examples, prompts, rewards, and loading records from JSONL files."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from t2cli.errors import BadInputError
from t2cli.tasks.choice import LETTERS
from t2cli.tasks.record import Record


@dataclass(frozen=True)
class Example:
    """One task item. `question` is the full user-facing prompt text; every field is JSON-serialisable."""

    id: str
    question: str
    reference: Any
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """A task loads examples, turns them into prompts and scores completions with a reward in [-1, 1]."""

    name: str
    description: str  # one sentence; routing prompts show it next to the name
    system: str | None = None
    answer_cue: str = "Answer:"  # ends plain prompts for models without a chat template
    # False for prompt formats meant as plain text even on chat models (e.g. ARC's cloze style).
    uses_chat_template: bool = True
    # `t2 train` settings this task starts from when the user sets none (TrainConfig field -> value): a
    # run of the generic defaults can take hours on a CPU for some tasks. Flags and --config win.
    training_defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    @abstractmethod
    def load(self, source: str | Path | None = None, split: str = "test", limit: int | None = None) -> list[Example]:
        """Examples of `split` from a JSONL file, an hf://datasets/... file, or the packaged copy (None)."""

    @abstractmethod
    def score(self, example: Example, completion: str) -> float:
        """Reward in [-1, 1]; binary tasks give exactly +1 or -1."""

    def score_many(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        check_pairs(examples, completions)
        return [self.score(example, completion) for example, completion in zip(examples, completions, strict=True)]

    def messages(self, example: Example) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, {"role": "user", "content": example.question}]

    def plain_prompt(self, example: Example) -> str:
        text = "\n\n".join(part for part in (self.system, example.question) if part)
        return f"{text}\n{self.answer_cue}" if self.answer_cue else text

    def raw_request(self, example: Example) -> str:
        """The request as a user would send it, without the task's template (what a router sees in use);
        a multiple-choice task's choices stay in `example.choices`."""
        return example.question

    def reference_completion(self, example: Example) -> str | None:
        """A gold completion for NLL training or likelihood scoring, when the data has one."""
        return None

    def choice_labels(self, example: Example) -> tuple[str, ...]:
        """How a multiple-choice answer is spelled: the letters A, B, … by default."""
        return tuple(LETTERS[: len(example.choices)])


class FileTask(Task):
    """A task whose examples are records of a JSONL file, converted one by one."""

    # The hf://datasets/ URL, at its commit, that the last load read from (None: a local file or a
    # packaged copy): what a trained expert's provenance names as its data.
    origin: str | None = None

    @abstractmethod
    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        """The records of `split`, in a deterministic order. `limit`: only the first `limit` records are
        needed, so a task whose split is a prefix of a file stops reading there; more may be returned."""

    @abstractmethod
    def to_example(self, record: Record) -> Example:
        """Convert one record; KeyError, TypeError, ValueError or IndexError mark it malformed."""

    def load(self, source: str | Path | None = None, split: str = "test", limit: int | None = None) -> list[Example]:
        if limit is not None and limit < 0:
            raise BadInputError(f"limit must be >= 0, got {limit}; pass a non-negative --limit")
        records = self.records(source, split, limit)
        return [self._convert(record) for record in records[:limit]]

    def _convert(self, record: Record) -> Example:
        try:
            return self.to_example(record)
        except KeyError as error:
            problem = f"missing field {error}"
        except (TypeError, ValueError, IndexError) as error:
            problem = str(error)
        raise BadInputError(
            f"{record.where}: not a valid {self.name} record ({problem}); fix it or pass the right --data file"
        )


def check_pairs(examples: Sequence[Example], completions: Sequence[str]) -> None:
    if len(examples) != len(completions):
        raise BadInputError(
            f"got {len(examples)} examples but {len(completions)} completions; pass one completion per example"
        )
