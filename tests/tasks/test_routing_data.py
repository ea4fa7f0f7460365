"""The cls task's data: bare requests of the bank tasks plus `other`, balanced, seeded, split without overlap."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from t2cli.errors import BadInputError
from t2cli.tasks import arc, gsm8k
from t2cli.tasks.classification import (
    OTHER,
    WRAPPERS,
    other_requests,
    phrase,
    request_lines,
    routing_requests,
)
from t2cli.tasks.registry import get_task
from tests.helpers import tiny_tokenizer

SPLITS = ("train", "validation", "test")
# Template text the tasks put around their questions; none of it may reach a routing request.
TEMPLATES = (arc.INSTRUCTION, gsm8k.INSTRUCTION, "You are an expert Python programmer", "Your code should pass")


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def _sources(tmp_path: Path) -> dict[str, Path]:
    gsm = _write(
        tmp_path / "gsm8k.jsonl",
        [
            {"question": f"Ann has {n} apples and eats one. How many are left?", "answer": f"#### {n - 1}"}
            for n in range(60)
        ],
    )
    mbpp = _write(
        tmp_path / "mbpp.jsonl",
        [
            {
                "task_id": task_id,
                "text": f"Write a function to add {task_id} to a number.",
                "code": f"def add(x):\n    return x + {task_id}",
                "test_list": [f"assert add(1) == {task_id + 1}"],
            }
            for task_id in [*range(11, 41), *range(511, 541), *range(601, 661)]
        ],
    )
    folder = tmp_path / "arc"
    folder.mkdir()
    for suffix, count in (("Train", 60), ("Dev", 30), ("Test", 30)):
        _write(
            folder / f"ARC-Easy-{suffix}.jsonl",
            [
                {
                    "id": f"{suffix}-{n}",
                    "question": {
                        "stem": f"Which object ({suffix} {n}) floats on water?",
                        "choices": [
                            {"text": text, "label": label} for text, label in zip(("cork", "rock"), "AB", strict=True)
                        ],
                    },
                    "answerKey": "A",
                }
                for n in range(count)
            ],
        )
    return {"gsm8k": gsm, "mbpp": mbpp, "arc": folder}


@pytest.fixture
def tasks_and_sources(tmp_path: Path) -> tuple[list, dict[str, Path]]:
    return [get_task("gsm8k"), get_task("mbpp"), get_task("arc", shuffle_seed=0)], _sources(tmp_path)


def test_balanced_with_other_and_seeded(tasks_and_sources: tuple[list, dict[str, Path]]) -> None:
    tasks, sources = tasks_and_sources
    train = routing_requests(tasks, sources, "train", seed=1)
    counts = Counter(request.category for request in train)
    assert set(counts) == {"gsm8k", "mbpp", "arc", OTHER}
    assert len(set(counts.values())) == 1 and counts[OTHER] > 0
    assert train == routing_requests(tasks, sources, "train", seed=1)
    assert train != routing_requests(tasks, sources, "train", seed=2)
    limited = Counter(request.category for request in routing_requests(tasks, sources, "train", seed=1, limit=6))
    assert sorted(limited.values()) == [1, 1, 2, 2]
    per_category = Counter(r.category for r in routing_requests(tasks, sources, "test", per_category=40))
    assert per_category == {"gsm8k": 40, "mbpp": 30, "arc": 30, OTHER: len(other_requests("test"))}


def test_requests_are_bare_and_varied(tasks_and_sources: tuple[list, dict[str, Path]]) -> None:
    tasks, sources = tasks_and_sources
    requests = [r for split in SPLITS for r in routing_requests(tasks, sources, split)]
    assert not [r.text for r in requests if any(template in r.text for template in TEMPLATES)]
    arc_requests = [r.text for r in requests if r.category == "arc"]
    with_choices = [text for text in arc_requests if "cork" in text]
    assert 0 < len(with_choices) < len(arc_requests)  # multiple choice: with and without the listing
    assert sum(text.startswith("Q: ") for text in arc_requests) > 0
    assert any(r.text.startswith("Write a function to add") for r in requests if r.category == "mbpp")
    # The request text of a task example is its raw question, untouched inside the wrapper.
    assert any("Ann has 5 apples and eats one. How many are left?" in r.text for r in requests)


def test_splits_are_disjoint(tasks_and_sources: tuple[list, dict[str, Path]], tmp_path: Path) -> None:
    tasks, sources = tasks_and_sources
    # GSM8K's test split is a file of its own (a single file's "test" is all of it).
    gsm_test = _write(
        tmp_path / "gsm8k-test.jsonl", [{"question": f"Bob has {n} pears.", "answer": "#### 1"} for n in range(9)]
    )
    requests = {
        split: routing_requests(tasks, sources | ({"gsm8k": gsm_test} if split == "test" else {}), split)
        for split in SPLITS
    }
    ids = {split: {r.id for r in found if r.category != "gsm8k"} for split, found in requests.items()}
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    gsm = {split: {r.id for r in found if r.category == "gsm8k"} for split, found in requests.items()}
    assert gsm["train"] and gsm["validation"] and not gsm["train"] & gsm["validation"]
    assert all("Bob has" in r.text for r in requests["test"] if r.category == "gsm8k")
    others = {split: set(other_requests(split)) for split in SPLITS}
    assert not others["train"] & others["test"] and not others["train"] & others["validation"]
    assert sum(len(texts) for texts in others.values()) >= 100


def test_wrappers_are_shared_and_keep_the_request() -> None:
    rng = random.Random(0)
    texts = [phrase("How are you?", (), rng) for _ in range(200)]
    assert all("How are you?" in text for text in texts)
    assert {text.replace("How are you?", "{request}") for text in texts} == set(WRAPPERS)
    listed = [phrase("Pick one.", ("red", "blue"), rng) for _ in range(50)]
    assert any("A. red\nB. blue" in text or "(A) red\n(B) blue" in text or "A) red\nB) blue" in text for text in listed)


def test_request_lines_feed_dispatch(tasks_and_sources: tuple[list, dict[str, Path]]) -> None:
    tasks, sources = tasks_and_sources
    requests = routing_requests(tasks, sources, "test", limit=8)
    lines = request_lines(requests)
    assert [line["task"] for line in lines] == [r.category for r in requests]
    assert all(line["prompt"] == r.text and line["id"] == r.id for line, r in zip(lines, requests, strict=True))


def test_classification_labels_tokenize_distinctly(tasks_and_sources: tuple[list, dict[str, Path]]) -> None:
    """The classifier's answer is read from the categories' first tokens: `other` must not share one."""
    from t2cli.engines.base import label_token_ids

    tasks, sources = tasks_and_sources
    task = get_task("cls", tasks=tasks, sources=sources)
    names = [name for name, _ in task.categories]
    assert names[-1] == OTHER
    ids = label_token_ids(tiny_tokenizer(), names, chat=False)
    assert len(ids) == len(names)


def test_fill_uses_every_request_and_rephrases_the_smaller_categories(
    tasks_and_sources: tuple[list, dict[str, Path]],
) -> None:
    tasks, sources = tasks_and_sources
    filled = routing_requests(tasks, sources, "train", seed=1, per_category=70, fill=True)
    assert Counter(r.category for r in filled) == {"gsm8k": 70, "mbpp": 70, "arc": 70, OTHER: 70}
    assert len({r.id for r in filled}) == len(filled)
    # A category with fewer than 70 requests has every one of them, then some again in fresh wrappers.
    repeats = [r for r in filled if "#" in r.id]
    short = {r.category for r in repeats}
    assert short and OTHER not in short  # 90 `other` training requests: sampled, not repeated
    everything = routing_requests(tasks, sources, "train", seed=1, per_category=10_000)
    assert {r.id for r in everything if r.category in short} <= {r.id for r in filled}
    assert all(r.id.partition("#")[0] in {e.id for e in everything} for r in repeats)
    shown = Counter(r.text for r in filled if r.category in short)
    assert len(shown) > len([r for r in everything if r.category in short])  # not only copies
    with pytest.raises(BadInputError, match="per_category"):
        routing_requests(tasks, sources, "train", fill=True)


def test_cls_training_split_is_filled_and_held_out_splits_are_not(
    tasks_and_sources: tuple[list, dict[str, Path]],
) -> None:
    from t2cli.tasks.classification import TRAIN_REQUESTS_PER_CATEGORY

    tasks, sources = tasks_and_sources
    task = get_task("cls", tasks=tasks, sources=sources)
    train = Counter(example.reference for example in task.load(split="train"))
    assert set(train.values()) == {TRAIN_REQUESTS_PER_CATEGORY}
    test = task.load(split="test")
    assert [e.id for e in test] == [r.id for r in routing_requests(tasks, sources, "test")]
    assert not any("#" in e.id for e in test)
