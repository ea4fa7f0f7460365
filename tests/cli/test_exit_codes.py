"""Every exit code of README "Exit codes", from representative commands: one line on stderr, nothing on stdout."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts import versions as store
from t2cli.experts.manifest_fields import Z_FILE
from t2cli.experts.registry import Registry
from t2cli.experts.versions import LOCK_FILE
from tests.helpers import make_expert, make_model_folder


@pytest.fixture
def registry(tmp_path: Path, t2_home: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    registry.publish(make_expert("arc", seed=0))
    return registry


def t2(registry: Registry, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--registry", str(registry.root)])
    return result.exit_code, result.stdout, result.stderr


def assert_error(outcome: tuple[int, str, str], code: int, text: str) -> None:
    exit_code, out, err = outcome
    assert (exit_code, out) == (code, ""), err
    assert err.startswith("error: ") and err.count("\n") == 1 and text in err


def test_0_success(registry: Registry) -> None:
    code, out, err = t2(registry, "registry", "verify", "--json")
    assert (code, err) == (0, "") and '"ok": true' in out


def test_1_an_expert_locked_by_another_process(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "LOCK_TIMEOUT_S", 0.2)
    with FileLock(registry.root / "tiny-llama" / "arc" / LOCK_FILE):  # another holder of the lock
        assert_error(t2(registry, "registry", "rm", "arc@1", "--json"), 1, "locked by another t2 process")
    assert registry.catalog() == {"tiny-llama": {"arc": [1]}}


def test_2_bad_input(registry: Registry) -> None:
    assert_error(t2(registry, "registry", "show", "Bad/Name", "--json"), 2, "invalid expert name")
    assert_error(t2(registry, "compose", "arc=x", "-o", "mix", "--json"), 2, "arc=x")
    assert t2(registry, "registry", "list", "--no-such-option")[0] == 2  # usage errors too (click)


def test_3_missing_artifact(registry: Registry) -> None:
    assert_error(t2(registry, "registry", "show", "matz", "--json"), 3, "expert 'matz' not found")
    outcome = CliRunner().invoke(app, ["decompose", "/nonexistent/model", "--json"])
    assert_error((outcome.exit_code, outcome.stdout, outcome.stderr), 3, "/nonexistent/model")


def test_4_integrity_failure(registry: Registry) -> None:
    z = registry.resolve("arc@1").path / Z_FILE
    z.write_bytes(z.read_bytes()[:-4])
    assert_error(t2(registry, "registry", "show", "arc@1", "--json"), 4, "checksum mismatch")
    code, out, err = t2(registry, "registry", "verify", "--json")  # the report on stdout, then the error
    assert code == 4 and '"ok": false' in out and err.startswith("error: 1 corrupt version(s)")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here, so it starts")
def test_5_engine_failure(registry: Registry, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    model = str(make_model_folder(tmp_path / "tiny"))
    output = tmp_path / "out.jsonl"
    outcome = t2(registry, "run", str(prompts), "--engine", "vllm", "--model", model, "-o", str(output), "--json")
    assert_error(outcome, 5, "vLLM is not installed")
    assert not output.exists()


# ---- bad input is refused in one line, before any model loads ------------------------------------
# Each command names a model that does not exist: loading it would exit 3, so exit 2 shows the
# refusal came first.

NO_MODEL = "/nonexistent/model"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--threads", "abc", "registry", "list"], "Invalid value for '--threads'"),
        (["--threads", "0", "registry", "list"], "Invalid value for '--threads'"),
        (["registry", "list", "--no-such-option"], "No such option: --no-such-option; see `"),
        (["run", "p.jsonl", "--tp", "0"], "Invalid value for '--tp'"),
        (["run", "p.jsonl", "--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["eval", "--task", "arc", "-n", "0"], "Invalid value for '--limit'"),
        (["run"], "Missing argument"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], text: str) -> None:
    assert_error(_run(*args), 2, text)


def test_bad_run_inputs_are_refused_before_the_model_loads(registry: Registry, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    common = ["--model", NO_MODEL, "--registry", str(registry.root)]
    assert_error(_run("run", str(prompts), "-o", str(tmp_path), *common), 2, "is a folder")
    assert_error(_run("run", str(prompts), "-o", str(prompts), *common), 2, "would overwrite the prompts file")
    assert_error(_run("run", str(prompts), "--adapt", "nosuch", *common), 3, "--adapt nosuch: no such expert")
    assert prompts.read_text() == '{"prompt": "hi"}\n'
    assert_error(_run("run", "/dev/zero", *common), 2, "/dev/zero is not a regular file")
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "\n" + '{"prompt": ' + "1" * 5000 + "}\n")
    assert_error(_run("run", str(deep), "--strict", *common), 2, "JSON nested too deeply (and 1 more)")


def test_bad_eval_decompose_transfer_inputs_are_refused_before_the_model_loads(
    registry: Registry, tmp_path: Path
) -> None:
    assert_error(_run("eval", "--task", "nosuchtask", "--model", NO_MODEL), 3, "unknown task 'nosuchtask'")
    assert_error(_run("eval", "--task", "arc", "--split", "tset", "--model", NO_MODEL), 2, "unknown split 'tset'")
    spec = tmp_path / "t.yaml"
    spec.write_text("name: t\ndescription: d\ndata: d.jsonl\nprompt: '{q}'\nanswer: a\nscorer: code\ntimeout_s: .inf\n")
    assert_error(_run("eval", "--task", str(spec), "--model", NO_MODEL), 2, "timeout_s must be a number of seconds")
    assert_error(_run("decompose", NO_MODEL, "--driver", "qr"), 2, "unknown SVD driver 'qr'")
    transfer = ["transfer", "arc", "--to", NO_MODEL, "--registry", str(registry.root)]
    assert_error(_run(*transfer, "--strength", "nan"), 2, "strength must be a finite number")


def test_a_huge_alpha_is_bad_input(registry: Registry) -> None:
    assert_error(t2(registry, "compose", "arc=1e308", "-o", "mix", "--json"), 2, "between -1000 and 1000")


def test_verify_of_a_missing_registry_exits_3(tmp_path: Path) -> None:
    assert_error(_run("registry", "verify", "--registry", str(tmp_path / "no-such-dir")), 3, "does not exist")


def test_hostile_outputs_and_names_are_refused_before_the_model_loads(registry: Registry, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    common = ["--model", NO_MODEL, "--registry", str(registry.root)]
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    for command in ("run", "dispatch"):
        for device in ("/dev/null", str(fifo)):  # resume would read it forever; the rename would replace it
            assert_error(_run(command, str(prompts), "-o", device, *common), 2, "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(fifo).st_mode)
    (tmp_path / "out.jsonl.partial").symlink_to(prompts)
    assert_error(_run("run", str(prompts), "-o", str(tmp_path / "out.jsonl"), *common), 2, "resume journal")
    assert_error(_run("dispatch", str(prompts), "--adapt", "bogus", *common), 3, "--adapt bogus: no such expert")
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({"prompt": "x" * 1_000_001}) + "\n")
    assert_error(_run("run", str(huge), "--strict", *common), 2, "over t2's limit of 1,000,000")
    assert prompts.read_text() == '{"prompt": "hi"}\n'
