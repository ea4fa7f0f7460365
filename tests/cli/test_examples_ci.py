"""examples/ci.sh end to end: train, verify, compose and run on a tiny model folder and a YAML task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2cli.experts.registry import Registry
from tests.helpers import make_model_folder, make_task

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "ci.sh"
PROMPTS = [{"id": "a", "prompt": "cab"}, {"id": "b", "prompt": "dog"}, {"id": "c", "prompt": "fox"}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ci")
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS) + "\n")  # a trailing blank line is no prompt
    return {"tmp": tmp, "model": make_model_folder(tmp / "tiny"), "task": make_task(tmp), "prompts": prompts}


def run_ci(setup: dict[str, Path], work: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("T2_REGISTRY", "COLUMNS")}
    env |= {
        "T2_HOME": str(work / "home"),
        "T2_THREADS": "1",
        "T2_CLI": f"{sys.executable} -m t2cli",
        "T2_CI_PYTHON": sys.executable,
        "T2_CI_MODEL": str(setup["model"]),
        "T2_CI_TASK": str(setup["task"]),
        "T2_CI_PROMPTS": str(setup["prompts"]),
        "T2_CI_REGISTRY": str(work / "registry"),
        "T2_CI_OUT": str(work / "out"),
        "T2_CI_STEPS": "2",
        "T2_CI_TRAIN_ARGS": "--batch-size 2 --samples 2 --max-new-tokens 2 --val-every 2 --val-limit 2",
        "T2_CI_MAX_NEW_TOKENS": "2",
        **overrides,
    }
    return subprocess.run(["bash", str(SCRIPT)], cwd=work, env=env, capture_output=True, text=True, timeout=300)


def test_ci_script_trains_verifies_composes_and_answers_every_prompt(setup: dict[str, Path]) -> None:
    work = setup["tmp"] / "ok"
    result = run_ci(setup, work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ci: ok: trained ci-expert@1") and "composed ci-expert-release@1" in result.stdout
    out = work / "out"
    assert json.loads((out / "verify.json").read_text())["ok"] is True
    registry = Registry(work / "registry")
    assert registry.verify() == [] and registry.catalog() == {"tiny": {"ci-expert": [1], "ci-expert-release": [1]}}
    recipe = registry.resolve("ci-expert-release").manifest().provenance["recipe"]
    assert [(e["name"], e["alpha"]) for e in recipe["experts"]] == [("ci-expert@1", 1.0)]
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["a", "b", "c"]
    assert {row["expert"] for row in rows} == {"ci-expert-release@1"}
    summary = json.loads((out / "run.json").read_text())
    assert (summary["lines"], summary["generated"]) == (3, 3)
    # --quiet and a non-terminal stdout: the job log holds the step lines and nothing else.
    steps = [line.split(" ")[1] for line in result.stderr.splitlines()]
    assert steps == ["training", "verifying", "composing", "answering"]


def test_ci_script_stops_at_the_failing_step_with_its_exit_code(setup: dict[str, Path]) -> None:
    work = setup["tmp"] / "missing"
    result = run_ci(setup, work, T2_CI_TASK=str(setup["tmp"] / "nope.yaml"))
    assert result.returncode == 3  # NotFoundError, passed through by set -e
    assert (
        result.stderr.splitlines()[-1]
        == f"error: task spec not found: {setup['tmp'] / 'nope.yaml'}; pass an existing YAML file"
    )
    assert not (work / "out" / "verify.json").exists() and not (work / "registry").exists()
