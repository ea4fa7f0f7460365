"""Few-shot with the shots taken from the batch: which lines are shots (per task, too few, mixed, none),
one search per task (saved and reused), and the per-task routing that answers each line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from t2cli.adapt.prepare import StrategyOptions, make_router
from t2cli.adapt.routers import BASE, TaskRouter
from t2cli.adapt.runio import InputLine, parse_line
from t2cli.adapt.shots import MIXED, batch_shot_sets
from t2cli.cli.app import app
from t2cli.engines.slot import ExpertSlot
from t2cli.experts.registry import Registry
from tests.helpers import FakeEngine, publish_expert, tiny_cli_world, tiny_model


def gsm8k(n: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"m{n}", "prompt": f"what is {n} plus {n}?", "task": "gsm8k", "answer": f"#### {2 * n}", **extra}


def arc(n: int) -> dict[str, Any]:
    choices = [{"text": "yes", "label": "A"}, {"text": "no", "label": "B"}]
    return {"id": f"s{n}", "prompt": f"is ice {n} cold?", "task": "arc", "question": {"stem": "?", "choices": choices},
            "answerKey": "A"}  # fmt: skip


def as_lines(rows: list[dict[str, Any]]) -> list[InputLine]:
    lines = [parse_line(json.dumps(row), number) for number, row in enumerate(rows, 1)]
    assert all(isinstance(line, InputLine) for line in lines)
    return lines  # type: ignore[return-value]


CHAT = {"id": "c1", "prompt": "hello there", "task": "chitchat"}
BARE = {"id": "b1", "prompt": "what is 7 plus 7?"}


def test_each_task_with_three_labelled_lines_gets_its_shots_and_the_rest_share_the_mixed_set() -> None:
    # gsm8k: 4 labelled (+1 without its answer); arc: 2 labelled (too few); a chitchat and a bare line.
    rows = [gsm8k(1), arc(1), gsm8k(2), CHAT, gsm8k(3), {**gsm8k(9), "answer": None}, arc(2), BARE, gsm8k(4)]
    per_task, pool = batch_shot_sets(as_lines(rows), seed=0)
    assert set(per_task) == {"gsm8k"}
    assert per_task["gsm8k"].lines == (1, 3, 5, 9) and per_task["gsm8k"].label == "gsm8k"
    assert [example.reference for _, example in per_task["gsm8k"].shots] == ["2", "4", "6", "8"]
    assert pool is not None and pool.label == MIXED
    assert pool.lines == (1, 2, 3, 5, 7, 9)  # every labelled line, in input order
    assert {task.name for task, _ in pool.shots} == {"gsm8k", "arc"}


def test_a_batch_whose_every_line_has_its_task_shots_needs_no_mixed_search() -> None:
    per_task, pool = batch_shot_sets(as_lines([gsm8k(1), gsm8k(2), gsm8k(3), {**gsm8k(4), "answer": None}]), seed=0)
    assert per_task["gsm8k"].lines == (1, 2, 3) and pool is None


def test_fewer_than_three_labelled_lines_in_all_search_nothing() -> None:
    assert batch_shot_sets(as_lines([gsm8k(1), arc(1), CHAT, BARE]), seed=0) == ({}, None)
    assert batch_shot_sets(as_lines([CHAT, BARE]), seed=0) == ({}, None)


def test_more_than_twenty_labelled_lines_are_a_seeded_pick_in_input_order() -> None:
    lines = as_lines([gsm8k(n) for n in range(1, 26)])
    picked = batch_shot_sets(lines, seed=0)[0]["gsm8k"]
    assert len(picked.lines) == 20 and list(picked.lines) == sorted(picked.lines)
    again = batch_shot_sets(lines, seed=0)[0]["gsm8k"]
    assert (again.lines, again.sha256) == (picked.lines, picked.sha256)
    assert batch_shot_sets(lines, seed=1)[0]["gsm8k"].lines != picked.lines


def test_the_shots_hash_is_their_canonical_content() -> None:
    first = batch_shot_sets(as_lines([gsm8k(1), gsm8k(2), gsm8k(3)]), seed=0)[0]["gsm8k"]
    reordered = {key: value for key, value in reversed(list(gsm8k(1).items()))}
    same = batch_shot_sets(as_lines([reordered, gsm8k(2), gsm8k(3)]), seed=0)[0]["gsm8k"]
    edited = batch_shot_sets(as_lines([gsm8k(1, answer="#### 3"), gsm8k(2), gsm8k(3)]), seed=0)[0]["gsm8k"]
    assert same.sha256 == first.sha256 != edited.sha256


@pytest.fixture
def bank(tmp_path: Path):
    loaded = tiny_model()
    registry = Registry(tmp_path / "registry")
    publish_expert(registry, loaded, "up", "gsm8k", z=1.0, noise_seed=1)
    publish_expert(registry, loaded, "down", "arc", z=0.0, noise_seed=2)
    return loaded, registry


def test_the_batch_router_searches_once_per_task_marks_shots_and_reuses_saved_searches(bank) -> None:
    loaded, registry = bank
    lines = as_lines([gsm8k(1), gsm8k(2), gsm8k(3), {**gsm8k(4), "answer": None}, arc(1), CHAT])
    options = StrategyOptions()
    engine = FakeEngine()
    router = make_router("few-shot", ExpertSlot(engine, registry, loaded), loaded, registry, options, lines=lines)
    assert isinstance(router, TaskRouter)
    decisions = router.decide([line.prompt for line in lines])
    assert [d.expert for d in decisions] == ["gsm8k-fewshot@1"] * 4 + ["mixed-fewshot@1"] * 2
    assert [d.label for d in decisions] == ["gsm8k"] * 4 + [MIXED] * 2
    assert [d.shot for d in decisions] == [True, True, True, False, True, False]
    assert set(decisions[0].alpha) == {"up@1", "down@1"}
    assert router.note == (
        "few-shot from the batch: gsm8k (3 shots): searched α and saved gsm8k-fewshot@1; mixed (4 shots, for the "
        "2 lines without their own task's shots): searched α and saved mixed-fewshot@1"
    )
    searched = registry.resolve("mixed-fewshot").manifest()
    assert searched.provenance["shots"] == 4 and searched.provenance["score"] == "likelihood"  # the batch default
    assert searched.provenance["cem"]["population"] == 4 and searched.provenance["cem"]["iterations"] == 2
    assert router.decide([[{"role": "user", "content": "never seen"}]]) == [router.fallback]

    again = FakeEngine()
    reused = make_router("few-shot", ExpertSlot(again, registry, loaded), loaded, registry, options, lines=lines)
    assert reused == router.__class__(router.decisions, router.fallback, reused.note) and again.set_calls == []
    assert "gsm8k (3 shots): reused gsm8k-fewshot@1" in reused.note


def test_too_few_labelled_lines_keep_the_base_weights_and_say_so(bank) -> None:
    loaded, registry = bank
    lines = as_lines([gsm8k(1), gsm8k(2), CHAT])
    router = make_router("few-shot", ExpertSlot(FakeEngine(), registry, loaded), loaded, registry, lines=lines)
    assert router.decide([line.prompt for line in lines]) == [BASE] * 3
    assert router.note.endswith("3 lines keep the base weights: the batch has fewer than 3 labelled lines to search "
                                "a mixture for them")  # fmt: skip
    assert registry.catalog()["tiny-llama"].keys() == {"up", "down"}


def test_run_few_shot_from_the_batch_marks_the_shots_in_its_output(tmp_path: Path, t2_home: Path) -> None:
    world = tiny_cli_world(tmp_path, [gsm8k(1), CHAT, gsm8k(2), arc(1), gsm8k(3)])
    args = ["run", str(world["prompts"]), "--adapt", "few-shot", "--model", world["model"]]
    args += ["--registry", world["registry"]]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["id"] for row in rows] == ["m1", "c1", "m2", "s1", "m3"]
    assert [row["expert"] for row in rows] == ["gsm8k-fewshot@1", "mixed-fewshot@1", "gsm8k-fewshot@1",
                                               "mixed-fewshot@1", "gsm8k-fewshot@1"]  # fmt: skip
    assert [row.get("shot") for row in rows] == [True, None, True, True, True]
    assert rows[0]["score"] in (0.0, 1.0) and "score" not in rows[1]
    assert "few-shot from the batch: gsm8k (3 shots): searched α and saved gsm8k-fewshot@1" in result.stderr
    # --task/--shots still take precedence: a named shots file is one search for every line.
    shots = tmp_path / "shots.jsonl"
    shots.write_text("".join(json.dumps({"question": r["prompt"], "answer": r["answer"]}) + "\n"
                             for r in (gsm8k(5), gsm8k(6), gsm8k(7))))  # fmt: skip
    named = CliRunner().invoke(app, [*args, "--task", "gsm8k", "--shots", str(shots), "--cem-score", "likelihood",
                                     "--cem-iterations", "1", "--max-new-tokens", "2"])  # fmt: skip
    assert named.exit_code == 0, named.output
    assert {json.loads(line)["expert"] for line in named.stdout.splitlines()} == {"gsm8k-fewshot@2"}
    assert all("shot" not in json.loads(line) for line in named.stdout.splitlines())
