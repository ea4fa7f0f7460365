"""Pass 2: grouping with one swap per group, input order, scoring, journaling and resume; input lines."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from t2cli.adapt.routers import Decision, FixedRouter
from t2cli.adapt.runio import InputLine, Journal, LineProblem, line_key, parse_line, read_inputs
from t2cli.adapt.two_pass import compare_base, run_batch
from t2cli.engines.base import Prompt, Sampling
from t2cli.engines.slot import ExpertSlot
from t2cli.errors import BadInputError
from t2cli.experts.registry import Registry
from tests.helpers import FakeEngine, tiny_model, two_expert_registry

SAMPLING = Sampling(max_new_tokens=8)


@dataclass(frozen=True)
class WordRouter:
    """Routes by a word in the prompt: `math` -> m@1, `code` -> c@1, anything else -> base."""

    identity = {"strategy": "words"}  # noqa: RUF012 - a constant of this test router
    categories = ("gsm8k", "mbpp", "other")
    note = None

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]:
        def route(prompt: Prompt) -> Decision:
            for word, spec, label in (("math", "m@1", "gsm8k"), ("code", "c@1", "mbpp")):
                if word in str(prompt):
                    return Decision(spec, None, label, {})
            return Decision(None, None, "other", {})

        return [route(p) for p in prompts]


PROMPTS = ["math one", "hello", "code one", "math two", "code two", "chat", "math three"]


def lines_of(prompts: Sequence[str]) -> list[InputLine]:
    return [InputLine(n, {"id": f"p{n}", "prompt": p}, p) for n, p in enumerate(prompts, 1)]


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return two_expert_registry(tmp_path / "registry")


def run(registry, engine, prompts=PROMPTS, **options):
    slot = ExpertSlot(engine, registry, tiny_model())
    rows, summary = run_batch(lines_of(prompts), WordRouter, slot, SAMPLING, **options)
    return rows, summary, slot


def test_each_group_is_one_swap_and_one_batch_and_outputs_keep_input_order(registry) -> None:
    engine = FakeEngine()
    rows, summary, _ = run(registry, engine)
    # Base first (the engine holds it already: no swap), then math, then code.
    assert engine.set_calls == ["z=1.50", "z=0.50"]
    assert engine.generate_calls == 3
    assert (summary.groups, summary.swaps, summary.pass1_swaps) == (3, 2, 0)
    assert [row["id"] for row in rows] == [f"p{n}" for n in range(1, 8)]
    assert [row["line"] for row in rows] == list(range(1, 8))
    assert [row["completion"].split("|")[0] for row in rows] == [
        "z=1.50", "base", "z=0.50", "z=1.50", "z=0.50", "base", "z=1.50"
    ]  # fmt: skip
    assert [row["expert"] for row in rows][:3] == ["m@1", None, "c@1"]
    assert all(row["alpha"] is None and "score" not in row for row in rows)
    assert summary.experts == {"m@1": 3, "base": 2, "c@1": 2}
    assert (summary.generated, summary.reused, summary.lines) == (7, 0, 7)


def test_chunks_split_a_group_without_extra_swaps(registry) -> None:
    engine = FakeEngine()
    _, summary, _ = run(registry, engine, chunk_size=2)
    # base: 2 prompts, 1 chunk; math: 3 prompts, 2 chunks; code: 2 prompts, 1 chunk.
    assert engine.generate_calls == 4 and summary.swaps == 2


def test_interrupted_run_resumes_without_regenerating_finished_lines(registry, tmp_path) -> None:
    output = tmp_path / "out.jsonl"
    journal = Journal(output)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(registry, FakeEngine(fail_after=3), journal=journal, chunk_size=1)
    assert not output.exists()  # never a partial output file
    finished = journal.finished()
    assert len(finished) == 3

    engine = FakeEngine()
    rows, summary, _ = run(registry, engine, journal=Journal(output), chunk_size=1)
    assert (summary.reused, summary.generated) == (3, 4)
    assert len(engine.generated) == 4 and not {row["prompt"] for row in finished.values()} & set(engine.generated)
    assert not journal.path.exists()
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert written == rows and [row["line"] for row in rows] == list(range(1, 8))
    clean, _, _ = run(registry, FakeEngine())
    assert rows == clean


def test_a_finished_output_is_reused_and_other_settings_or_inputs_are_not(registry, tmp_path) -> None:
    output = tmp_path / "out.jsonl"
    run(registry, FakeEngine(), journal=Journal(output))
    before = output.read_text()

    again = FakeEngine()
    _, summary, _ = run(registry, again, journal=Journal(output))
    assert (summary.reused, again.generate_calls) == (7, 0) and output.read_text() == before

    edited = FakeEngine()
    _, summary, _ = run(registry, edited, [*PROMPTS[:3], "math edited", *PROMPTS[4:]], journal=Journal(output))
    assert (summary.reused, summary.generated) == (6, 1) and edited.generated == ["math edited"]

    other = FakeEngine()
    slot = ExpertSlot(other, registry, tiny_model())
    _, summary = run_batch(lines_of(PROMPTS), WordRouter, slot, Sampling(max_new_tokens=9), journal=Journal(output))
    assert summary.generated == 7  # other sampling settings: other keys

    fresh = FakeEngine()
    _, summary, _ = run(registry, fresh, journal=Journal(output), resume=False)
    assert summary.generated == 7 and len(fresh.generated) == 7


def test_a_torn_journal_line_is_skipped(registry, tmp_path) -> None:
    output = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        run(registry, FakeEngine(fail_after=2), journal=Journal(output), chunk_size=1)
    with Journal(output).path.open("a") as handle:
        handle.write('{"line": 7, "key": "abc", "compl')
    _, summary, _ = run(registry, FakeEngine(), journal=Journal(output))
    assert (summary.reused, summary.generated) == (2, 5)


def test_lines_with_a_task_and_its_reference_fields_are_scored(registry) -> None:
    engine = FakeEngine()
    lines = [
        InputLine(1, {"prompt": "math one", "task": "gsm8k", "answer": "1 + 1\n#### 2"}, "math one"),
        InputLine(2, {"prompt": "math two", "task": "gsm8k"}, "math two"),  # no answer: nothing to score with
        InputLine(3, {"prompt": "hi", "task": "chitchat"}, "hi"),  # not a task t2 knows
    ]
    slot = ExpertSlot(engine, registry, tiny_model())
    rows, _ = run_batch(lines, WordRouter, slot, SAMPLING)
    # The fake completion ends with the prompt, so "math one" has no final number 2: reward -1, score 0.
    assert (rows[0]["score"], rows[0]["reference"]) == (0.0, "2")
    assert "score" not in rows[1] and "score" not in rows[2]


def test_fixed_router_alpha_reaches_every_row(registry) -> None:
    decision = Decision("m@1", {"m@1": 0.6, "c@1": 0.4}, "gsm8k", {})
    slot = ExpertSlot(FakeEngine(), registry, tiny_model())
    rows, summary = run_batch(lines_of(["a", "b"]), lambda: FixedRouter(decision), slot, SAMPLING)
    assert [row["alpha"] for row in rows] == [{"m@1": 0.6, "c@1": 0.4}] * 2 and summary.swaps == 1


def test_keys_depend_on_the_line_and_the_run() -> None:
    line = InputLine(1, {"prompt": "x"}, "x")
    assert line_key(line, {"a": 1}) == line_key(InputLine(1, {"prompt": "x"}, "x"), {"a": 1})
    assert line_key(line, {"a": 1}) != line_key(line, {"a": 2})
    assert line_key(line, {"a": 1}) != line_key(InputLine(1, {"prompt": "y"}, "y"), {"a": 1})


def test_bad_lines_are_reported_by_number(tmp_path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"id": 1, "prompt": "fine"}',
                "{not json",
                "",
                '{"id": 3}',
                '["a list"]',
                '{"messages": [{"role": "user", "content": "hi"}], "task": "chat"}',
                '{"messages": [{"role": "robot", "content": "hi"}]}',
                '{"prompt": "   "}',
            ]
        )
        + "\n"
    )
    lines, problems = read_inputs(path)
    assert [line.number for line in lines] == [1, 6]
    assert lines[1].prompt == [{"role": "user", "content": "hi"}] and lines[1].task == "chat"
    assert [(p.number, p.message.split(" (")[0].split(";")[0]) for p in problems] == [
        (2, "malformed JSON"),
        (4, "has neither `prompt` nor `messages`"),
        (5, "expected a JSON object, got list"),
        (7, "messages[0] has role 'robot'"),
        (8, "`prompt` must be a non-empty string"),
    ]
    # t2's sentence; the reason in brackets is the json module's own wording.
    assert re.fullmatch(rf"{re.escape(str(path))}:2: malformed JSON \([^\n]+\)", problems[0].describe(path))


def test_a_chat_must_end_with_the_user() -> None:
    parsed = parse_line('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}', 3)
    assert parsed == LineProblem(3, "the last message must be the user's")


def test_mixed_lora_pass_matches_the_exact_groups_without_swaps(registry, t2_home) -> None:
    from t2cli.engines.hf import HFEngine

    exact_rows, exact, _ = run(registry, HFEngine(tiny_model(), batch_size=4))
    # The exact path is bitwise the groups generated one by one with their expert swapped in.
    alone = ExpertSlot(HFEngine(tiny_model(), batch_size=4), registry, tiny_model())
    for spec in ("m@1", "c@1", None):
        alone.hold(spec)
        members = [row for row in exact_rows if row["expert"] == spec]
        texts = [g.text for g in alone.engine.generate([row["prompt"] for row in members], SAMPLING)]
        assert texts == [row["completion"] for row in members]
    base = [g.text for g in alone.engine.generate(PROMPTS, SAMPLING)]
    assert base != [row["completion"] for row in exact_rows]  # the experts do change what is said
    # The tiny experts scale whole spectra, so a rank-32 export is their exact change: same completions,
    # one mixed batch, no swap, and each row says which path answered.
    rows, summary, _ = run(registry, HFEngine(tiny_model(), batch_size=8), lora_rank=32)
    assert [row["completion"] for row in rows] == [row["completion"] for row in exact_rows]
    assert (summary.pass2, summary.swaps, summary.groups, exact.pass2) == ("lora:32", 0, 3, "exact")
    assert [row["path"] for row in rows] == ["exact" if row["expert"] is None else "lora:32" for row in rows]
    assert {row["path"] for row in exact_rows} == {"exact"}
    assert rows[0]["key"] != exact_rows[0]["key"]  # another path, another output: resume never mixes them


def test_rows_answer_every_group_in_one_batch_as_the_swaps_do(registry) -> None:
    from t2cli.engines.hf import HFEngine

    grouped_rows, grouped, _ = run(registry, HFEngine(tiny_model(), batch_size=8))  # the default: groups
    rows, summary, _ = run(registry, HFEngine(tiny_model(), batch_size=8), batching="rows")
    assert [row["completion"] for row in rows] == [row["completion"] for row in grouped_rows]
    assert [row["key"] for row in rows] == [row["key"] for row in grouped_rows]  # both exact: resume shares them
    assert (summary.batching, summary.swaps, summary.groups) == ("rows", 0, 3)
    assert (grouped.batching, grouped.swaps, grouped.groups) == ("groups", 2, 3)


def test_rows_are_refused_before_pass_1_where_the_engine_cannot_mix(registry) -> None:
    engine = FakeEngine()
    with pytest.raises(BadInputError, match="--pass2 groups"):
        run(registry, engine, batching="rows")
    with pytest.raises(BadInputError, match="groups, rows"):
        run(registry, engine, batching="rowz")
    assert engine.label_calls == [] and engine.generate_calls == 0


def test_engines_without_mixed_batches_keep_exact_swaps(registry) -> None:
    engine = FakeEngine()
    rows, summary, _ = run(registry, engine, lora_rank=16)
    assert summary.pass2 == "exact" and summary.swaps == 2 and {row["path"] for row in rows} == {"exact"}


def test_compare_base_answers_scored_lines_with_the_base_weights_once(registry) -> None:
    engine = FakeEngine()
    lines = [
        # The expert's completion "z=1.50|math x" ends with 1.5 (right); the base's has no number (wrong).
        InputLine(1, {"prompt": "math x", "task": "gsm8k", "answer": "#### 1.5"}, "math x"),
        InputLine(2, {"prompt": "hello", "task": "gsm8k", "answer": "#### 3"}, "hello"),  # routed to the base
        InputLine(3, {"prompt": "chat"}, "chat"),  # unlabelled
    ]
    slot = ExpertSlot(engine, registry, tiny_model())
    rows, _ = run_batch(lines, WordRouter, slot, SAMPLING)
    calls = engine.generate_calls
    compared = compare_base(lines, rows, slot, SAMPLING)
    assert engine.generate_calls == calls + 1 and engine.generated[-1:] == ["math x"]  # only the expert's line
    first = compared[0]
    assert (first["score"], first["base_score"], first["base_completion"]) == (1.0, 0.0, "base|math x")
    assert (compared[1]["base_completion"], compared[1]["base_score"]) == (rows[1]["completion"], rows[1]["score"])
    assert compared[2] == rows[2] and "base_score" not in rows[0]  # the input rows are left as they were
    assert compare_base(lines, compared, slot, SAMPLING) == compared and engine.generate_calls == calls + 1
