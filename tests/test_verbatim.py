"""The command lines the README promises, run as a user types them, on the real SmolLM2 with the bundled
bank: each runs from a fresh working folder (no ./registry) with a fresh t2 home, so the user registry is
seeded from the bundled bank exactly as on a new install and the checkout's registry/ is never written.
The home shares the session's converted model and SVD cache (links), so SmolLM2 is converted once."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.adapt.bank import load_bank
from t2cli.cli.app import app
from t2cli.experts.registry import Registry
from t2cli.models.loading import LoadedModel

pytestmark = pytest.mark.real_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def user(smollm2_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new user's t2 home (model and SVD cache shared with the session) and an empty working folder.
    Tests that load the model also ask for `smollm2`, which converts it into the shared cache first."""
    home = tmp_path / "home"
    home.mkdir()
    for cache in ("models", "svd"):
        (smollm2_home / cache).mkdir(exist_ok=True)
        (home / cache).symlink_to(smollm2_home / cache, target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("T2_HOME", str(home))
    monkeypatch.setenv("T2_THREADS", "1")
    monkeypatch.delenv("T2_REGISTRY", raising=False)
    return home


def t2(command: str):
    """`command` exactly as typed after `t2`."""
    return CliRunner().invoke(app, shlex.split(command))


def test_train_mbpp_finds_its_data_without_data_flag(smollm2: LoadedModel, user: Path, tmp_path: Path) -> None:
    from t2cli.tasks.registry import get_task
    from t2cli.training.data import data_sha256

    # The line is `t2 train --task mbpp`; one short step keeps the test in CI time (validation on
    # two problems, short rollouts), into a scratch registry.
    result = t2(
        f"train --task mbpp --steps 1 --batch-size 1 --samples 2 --max-new-tokens 16 --val-limit 2 "
        f"--registry {tmp_path / 'scratch'}"
    )
    assert result.exit_code == 0, result.output
    manifest = Registry(tmp_path / "scratch").resolve("mbpp", "smollm2-135m").manifest()
    assert manifest.task == "mbpp" and manifest.provenance["data"]["name"] is None  # the task's own data
    assert manifest.provenance["data_sha256"] == data_sha256(get_task("mbpp").load(None, "train"))


def test_run_few_shot_on_the_example_prompts(smollm2: LoadedModel, user: Path) -> None:
    work = Path.cwd()
    shutil.copytree(EXAMPLES, work / "examples")
    result = t2("run --adapt few-shot examples/prompts.jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    inputs = [json.loads(line) for line in (EXAMPLES / "prompts.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == [row["id"] for row in inputs]
    # gsm8k (4 labelled), mbpp (3) and arc (3) get a search each; the chit-chat lines the mixed one.
    experts = {row["task"]: row["expert"] for row in rows}
    assert experts == {
        "gsm8k": "gsm8k-fewshot@1",
        "mbpp": "mbpp-fewshot@1",
        "arc": "arc-fewshot@1",
        "chitchat": "mixed-fewshot@1",
    }
    assert all(row.get("shot") is (True if "score" in row else None) for row in rows)
    registry = Registry(user / "registry")
    bank = {expert.ref.spec for expert in load_bank(registry, "smollm2-135m").experts}  # bundled, with a task
    assert "math@2" in bank and all(set(row["alpha"]) == bank for row in rows)
    assert "few-shot from the batch: gsm8k (4 shots): searched α and saved gsm8k-fewshot@1" in result.stderr
    assert registry.resolve("gsm8k-fewshot", "smollm2-135m").manifest().provenance["shots"] == 4
    assert (work / "registry").exists() is False  # the user registry took the searches, not the folder


def test_compose_math_and_arc(user: Path) -> None:
    result = t2("compose math=0.4 arc=0.6 -o mix")
    assert result.exit_code == 0, result.output
    manifest = Registry(user / "registry").resolve("mix", "smollm2-135m").manifest()
    assert manifest.provenance["kind"] == "composed"
    assert [entry["alpha"] for entry in manifest.provenance["recipe"]["experts"]] == [0.4, 0.6]
