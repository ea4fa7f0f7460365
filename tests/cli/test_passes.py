"""What `t2 run` and `t2 dispatch` share: the strategy flags, here --route-tokens, from the command line
to the router."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.adapt.options import DEFAULT_ADAPT, StrategyOptions
from t2cli.adapt.routers import ROUTE_TOKENS
from t2cli.cli.app import app
from t2cli.cli.dispatch import dispatch_command
from t2cli.cli.evaluate import eval_command
from t2cli.cli.options import EngineOption, EngineSettings
from t2cli.cli.run import run_command
from t2cli.cli.serve import serve_command
from t2cli.engines.hf import HFEngine
from t2cli.errors import BadInputError
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


def requests_read(world: dict, command: str, monkeypatch, *args: str) -> list[str]:
    """The requests pass 1 read (what the prompt router asked the engine about)."""
    asked: list[str] = []
    original = HFEngine.label_logprobs
    monkeypatch.setattr(
        HFEngine,
        "label_logprobs",
        lambda self, prompts, labels: asked.extend(prompts) or original(self, prompts, labels),
    )
    result = invoke(world, command, *args)
    assert result.exit_code == 0, result.output
    return asked


@pytest.mark.parametrize("command", list(COMMANDS))
def test_route_tokens_reaches_the_router_of_both_commands(world, command, monkeypatch) -> None:
    asked = requests_read(world, command, monkeypatch, "--route-tokens", "6")
    # The tiny tokenizer spells one character per token.
    assert "Request:\nwhat i\n" in asked[0] and "plus" not in asked[0]
    assert "Request:\nhello \n" in asked[1] and "there" not in asked[1]  # a chat line: its user message
    asked = requests_read(world, command, monkeypatch, "--route-tokens", "0")
    assert "Request:\nwhat is 2 plus 3?\n" in asked[0]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_route_tokens_is_refused_before_the_model_loads(world, command) -> None:
    world = {**world, "model": "/nowhere"}  # loading it would fail with exit 3
    result = invoke(world, command, "--route-tokens", "-4")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "error: --route-tokens -4: pass N >= 1 tokens, or 0 to read the whole request\n"


def test_help_states_the_library_default(world) -> None:
    params = {name: p.default for name, p in inspect.signature(dispatch_command).parameters.items()}
    assert params["route_tokens"] == ROUTE_TOKENS == StrategyOptions().route_tokens
    assert StrategyOptions.load(None, {"route_tokens": 0}).route_tokens == 0
    stated = "Default: all of it" if ROUTE_TOKENS is None else f"Default: {ROUTE_TOKENS}"
    assert stated in " ".join(CliRunner().invoke(app, ["dispatch", "--help"], env={"COLUMNS": "400"}).stdout.split())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_config_sets_strategy_settings_and_flags_win(world, command, monkeypatch) -> None:
    config = world["tmp"] / "strategy.yaml"
    config.write_text("route_tokens: 6\ncalibrate: false\n")
    asked = requests_read(world, command, monkeypatch, "--config", str(config))
    assert "Request:\nwhat i\n" in asked[0] and "plus" not in asked[0]  # the tiny tokenizer: a token a character
    asked = requests_read(world, command, monkeypatch, "--config", str(config), "--route-tokens", "0")
    assert "Request:\nwhat is 2 plus 3?\n" in asked[0]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("route_tokenz: 6\n", "unknown setting(s) route_tokenz; known: experts, classifier,"),
        ("route_tokens: six\n", "route_tokens must be an integer or null, got 'six'"),
        ("- route_tokens\n", "a config must be a YAML mapping of strategy settings"),
    ],
)
def test_a_bad_config_is_one_line_before_the_model_loads(world, text, named) -> None:
    config = world["tmp"] / "strategy.yaml"
    config.write_text(text)
    result = invoke({**world, "model": "/nowhere"}, "dispatch", "--config", str(config))  # loading would exit 3
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {config}: ") and named in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_config_file_gives_each_field_its_type(tmp_path: Path) -> None:
    config = tmp_path / "strategy.yaml"
    config.write_text("experts: [arc, gsm8k]\nshots: shots.jsonl\nforce: true\ncem_population: null\nroute_tokens: 0\n")
    loaded = StrategyOptions.load(config)
    assert (loaded.experts, loaded.shots, loaded.force) == (("arc", "gsm8k"), Path("shots.jsonl"), True)
    assert loaded.cem_population is None and loaded.route_tokens == 0
    assert StrategyOptions.load(config, {"experts": "mbpp"}).experts == ("mbpp",)  # a flag's comma list wins
    config.write_text("experts: arc, gsm8k\n")
    assert StrategyOptions.load(config).experts == ("arc", "gsm8k")
    config.write_text("force: 1\n")
    with pytest.raises(BadInputError, match="force must be true or false, got 1"):
        StrategyOptions.load(config)


def test_every_routing_command_shares_one_default_and_one_set_of_engine_options() -> None:
    routing = [inspect.signature(c).parameters for c in (run_command, dispatch_command, serve_command)]
    assert {params["adapt"].default for params in routing} == {DEFAULT_ADAPT}
    expected = {name: p.default for name, p in inspect.signature(EngineSettings).parameters.items()}
    for params in [*routing, inspect.signature(eval_command).parameters]:
        assert {name: params[name].default for name in expected} == expected
        assert params["engine"].annotation == EngineOption  # one declaration: flag, help, environment variable
