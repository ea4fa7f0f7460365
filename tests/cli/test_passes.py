"""What `t2 run` and `t2 dispatch` share: the strategy flags, here --route-tokens, from the command line
to the router."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.adapt.routers import ROUTE_TOKENS
from t2cli.cli.app import app
from t2cli.engines.hf import HFEngine
from tests.helpers import tiny_cli_world

PROMPTS = [
    {"id": "m1", "prompt": "what is 2 plus 3?", "task": "gsm8k"},
    {"id": "c1", "messages": [{"role": "user", "content": "hello there"}], "task": "other"},
]
COMMANDS = {"dispatch": (), "run": ("--max-new-tokens", "1", "-o")}


@pytest.fixture
def world(tmp_path: Path, t2_home: Path) -> dict:
    return tiny_cli_world(tmp_path, PROMPTS)


def invoke(world: dict, command: str, *args: str):
    extra = [*COMMANDS[command], str(world["tmp"] / "out.jsonl")] if command == "run" else []
    argv = [command, str(world["prompts"]), "--adapt", "prompt", *extra, *args]
    return CliRunner().invoke(app, [*argv, "--model", world["model"], "--registry", world["registry"]])


@pytest.mark.parametrize("command", list(COMMANDS))
def test_route_tokens_reaches_the_router_of_both_commands(world, command, monkeypatch) -> None:
    asked: list[str] = []
    original = HFEngine.label_logprobs
    monkeypatch.setattr(
        HFEngine,
        "label_logprobs",
        lambda self, prompts, labels: asked.extend(prompts) or original(self, prompts, labels),
    )
    result = invoke(world, command, "--route-tokens", "6")
    assert result.exit_code == 0, result.output
    # The tiny tokenizer spells one character per token.
    assert "Request:\nwhat i\n" in asked[0] and "plus" not in asked[0]
    assert "Request:\nhello \n" in asked[1] and "there" not in asked[1]  # a chat line: its user message
    asked.clear()
    assert invoke(world, command, "--route-tokens", "0").exit_code == 0
    assert "Request:\nwhat is 2 plus 3?\n" in asked[0]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_route_tokens_is_refused_before_the_model_loads(world, command) -> None:
    world = {**world, "model": "/nowhere"}  # loading it would fail with exit 3
    result = invoke(world, command, "--route-tokens", "-4")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "error: --route-tokens -4: pass N >= 1 tokens, or 0 to read the whole request\n"


def test_help_states_the_library_default(world) -> None:
    import inspect

    from t2cli.cli.dispatch import dispatch_command
    from t2cli.cli.passes import strategy_options

    params = {name: p.default for name, p in inspect.signature(dispatch_command).parameters.items()}
    assert strategy_options(params).route_tokens == ROUTE_TOKENS
    assert strategy_options({**params, "route_tokens": 0}).route_tokens == 0
    stated = "Default: all of it" if ROUTE_TOKENS is None else f"Default: {ROUTE_TOKENS}"
    assert stated in " ".join(CliRunner().invoke(app, ["dispatch", "--help"], env={"COLUMNS": "400"}).stdout.split())
