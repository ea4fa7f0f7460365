"""Shared fixtures: tiny random models built from configs, and the real SmolLM2 (marked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2cli.models.loading import LoadedModel


@pytest.fixture
def t2_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty t2 home for this test."""
    home = tmp_path / "t2home"
    monkeypatch.setenv("T2_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A t2 home shared by the real-model tests, so SmolLM2 is converted from GGUF once per session."""
    return tmp_path_factory.mktemp("smollm2-home")


@pytest.fixture(scope="session")
def smollm2(smollm2_home: Path) -> LoadedModel:
    from t2cli.models.loading import load_model

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("T2_HOME", str(smollm2_home))
        return load_model("smollm2-135m")


@pytest.fixture(autouse=True)
def transformers_engine_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--engine auto` would start vLLM wherever it is installed; tests ask for it by name instead."""
    monkeypatch.setenv("T2_ENGINE", "hf")


@pytest.fixture(autouse=True)
def offline_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the Hugging Face Hub: huggingface_hub is offline with an empty cache of its own,
    so a task's default data falls back to its packaged copy as it would on an offline machine. Tests of
    the Hub route start the local stand-in (tests/experts/test_remotes.py's `hub` fixture), which turns
    this off."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # for the t2 processes tests start
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path_factory.mktemp("hf-hub-cache")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
