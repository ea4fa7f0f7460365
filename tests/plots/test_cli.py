"""`--plot` on registry show, dispatch and eval: the PNG is written, and a plot that cannot be drawn is
refused before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model
from t2cli.plots import style
from tests.helpers import make_model_folder, publish_expert
from tests.plots.helpers import check_png

ARC = [
    {"id": "q1", "question": {"stem": "which is hot", "choices": [{"text": "sun", "label": "A"},
     {"text": "ice", "label": "B"}]}, "answerKey": "A"},
    {"id": "q2", "question": {"stem": "which is wet", "choices": [{"text": "sand", "label": "A"},
     {"text": "rain", "label": "B"}]}, "answerKey": "B"},
]  # fmt: skip
PROMPTS = [
    {"id": "m1", "prompt": "what is 2 plus 3?", "task": "gsm8k"},
    {"id": "s1", "prompt": "is ice cold? a. yes b. no", "task": "arc"},
    {"id": "c1", "prompt": "hello there", "task": "chitchat"},
]


@pytest.fixture
def world(tmp_path: Path, t2_home: Path) -> dict:
    folder = make_model_folder(tmp_path / "tiny")
    registry = Registry(tmp_path / "registry")
    loaded = load_model(str(folder))
    publish_expert(registry, loaded, "gsm8k", "gsm8k", z=1.2, noise_seed=1)
    publish_expert(registry, loaded, "arc", "arc", z=0.8, noise_seed=2)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    data = tmp_path / "arc.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ARC))
    return {"tmp": tmp_path, "model": str(folder), "registry": str(registry.root), "prompts": prompts, "arc": data}


def invoke(world: dict, *args: str, model: bool = True):
    return CliRunner().invoke(
        app, [*args, *(["--model", world["model"]] if model else []), "--registry", world["registry"]]
    )


def test_registry_show_dispatch_and_eval_write_their_figures(world) -> None:
    tmp = world["tmp"]
    shown = invoke(world, "registry", "show", "arc", "--plot", str(tmp / "arc.png"), "--json", model=False)
    assert shown.exit_code == 0, shown.output
    check_png(tmp / "arc.png", 900, 650)

    plotted = ("--plot", str(tmp / "routing.png"), "--json")
    routed = invoke(world, "dispatch", str(world["prompts"]), "--adapt", "prompt", *plotted)
    assert routed.exit_code == 0, routed.output
    check_png(tmp / "routing.png", 1000, 400)

    args = ["eval", "--task", "arc", "--data", str(world["arc"]), "--base", "-e", "arc", "--mode", "choices"]
    scored = invoke(world, *args, "--plot", str(tmp / "eval.png"), "--json")
    assert scored.exit_code == 0, scored.output
    check_png(tmp / "eval.png", 440, 360)


@pytest.mark.parametrize(
    "command",
    [
        ["registry", "show", "arc"],
        ["dispatch", "prompts.jsonl"],
        ["eval", "--task", "arc"],
    ],
)
def test_without_matplotlib_plot_is_refused_before_any_model_loads(command, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(style, "plots_available", lambda: False)
    # The model and registry do not exist: loading either first would exit 3, not 2.
    result = CliRunner().invoke(
        app, [*command, "--plot", str(tmp_path / "x.png"), "--model", "/nowhere", "--registry", "/nowhere"]
    )
    assert result.exit_code == 2, result.output
    assert "pip install 't2cli[plots]'" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_plot_file_must_be_a_png_in_an_existing_folder(world) -> None:
    not_png = invoke(world, "registry", "show", "arc", "--plot", str(world["tmp"] / "arc.jpg"), model=False)
    assert not_png.exit_code == 2 and "must end in .png" in not_png.output
    no_folder = invoke(world, "registry", "show", "arc", "--plot", str(world["tmp"] / "no" / "arc.png"), model=False)
    assert no_folder.exit_code == 2 and "does not exist" in no_folder.output
