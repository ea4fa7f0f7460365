"""Hostile output paths and files for `t2 run`: devices, links and crafted lines in -o and its resume journal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from t2cli.adapt.routers import BASE, FixedRouter
from t2cli.adapt.runio import InputLine, Journal, check_output, parse_line, read_rows
from t2cli.adapt.two_pass import run_batch
from t2cli.engines.base import Sampling
from t2cli.engines.context import MAX_PROMPT_CHARS, check_prompt_tokens
from t2cli.engines.slot import ExpertSlot
from t2cli.errors import BadInputError
from t2cli.experts.registry import Registry
from tests.helpers import FakeEngine, tiny_model

ROW = {"line": 1, "key": "k", "completion": "kept"}


def test_a_device_as_output_is_refused_and_never_read(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    with pytest.raises(BadInputError, match="not a regular file"):
        check_output(Path("/dev/null"), prompts)
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with pytest.raises(BadInputError, match="not a regular file"):
        check_output(fifo, prompts)
    with pytest.raises(BadInputError, match="not a regular file"):  # opened without blocking, then refused
        list(read_rows(fifo))
    with pytest.raises(BadInputError, match="not a regular file"):
        list(read_rows(Path("/dev/null")))


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_the_journal_never_writes_through_a_link(tmp_path: Path, link: str) -> None:
    victim = tmp_path / "prompts.jsonl"
    victim.write_text('{"prompt": "hi"}\n')
    output = tmp_path / "out.jsonl"
    journal = Journal(output)
    if link == "symlink":
        journal.path.symlink_to(victim)
    else:
        os.link(victim, journal.path)
    with pytest.raises(BadInputError, match="resume journal"):
        check_output(output, tmp_path / "other.jsonl")
    with pytest.raises(BadInputError, match="resume journal"):
        journal.append([ROW])
    assert victim.read_text() == '{"prompt": "hi"}\n'


def test_crafted_lines_in_an_output_are_skipped_on_resume(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.write_bytes(
        b"[" * 100_000
        + b"\n"
        + b'{"line": 2, "key": "k", "completion": ' + b"9" * 5000 + b"}\n"
        + b'{"line": 3, "completion": "\xff\xfe"}\n'
        + json.dumps(ROW).encode()
        + b"\n"
    )  # fmt: skip
    Journal(output).path.write_text('{"line": 1, "key": "j", "completion": "x"}\n' + "{" * 50_000)
    assert Journal(output).finished() == {(1, "k"): ROW, (1, "j"): {"line": 1, "key": "j", "completion": "x"}}


def test_a_prompt_over_the_character_cap_is_a_line_problem() -> None:
    problem = parse_line(json.dumps({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}), 4)
    assert not isinstance(problem, InputLine) and "over t2's limit" in problem.message
    messages = [{"role": "user", "content": "x" * (MAX_PROMPT_CHARS // 2 + 1)}] * 2
    assert not isinstance(parse_line(json.dumps({"messages": messages}), 5), InputLine)


def test_a_prompt_longer_than_the_context_is_refused_before_generation(tmp_path: Path) -> None:
    loaded = tiny_model()  # char-level tokenizer, 64-token context
    fine, long = InputLine(1, {"prompt": "hi"}, "hi"), InputLine(2, {"prompt": "y" * 200}, "y" * 200)
    check_prompt_tokens([("line 1", fine.prompt)], loaded)
    engine = FakeEngine()
    slot = ExpertSlot(engine, Registry(tmp_path / "registry"), loaded)
    with pytest.raises(BadInputError, match=r"line 2: the prompt is 20\d tokens, longer than the 64-token context"):
        run_batch([fine, long], lambda: FixedRouter(BASE), slot, Sampling(max_new_tokens=4))
    assert engine.generate_calls == 0
