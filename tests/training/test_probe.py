"""`t2 train --task cls --method probe`: a probe fitted on the cls task's bare requests, published, usable."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.experts.registry import Registry
from tests.helpers import make_model_folder
from tests.shared_data import needs_data


def test_train_method_probe_publishes_a_verified_probe(tmp_path: Path, t2_home: Path) -> None:
    data = f"gsm8k={needs_data('gsm8k', 'train.jsonl')},mbpp={needs_data('mbpp', 'mbpp.jsonl')}"
    model = make_model_folder(tmp_path / "tiny")
    registry = tmp_path / "reg"
    argv = ["train", "--task", "cls", "--experts", "gsm8k,mbpp", "--method", "probe", "--layer", "1"]
    argv += ["--tokens", "8", "--data", data, "--model", str(model), "--registry", str(registry), "--json"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["probe"] == "probe@1" and summary["layer"] == 1 and summary["tokens"] == 8
    assert summary["train_n"] == 1500  # 500 requests per category: gsm8k, mbpp, other
    assert 0 <= summary["val_score"] <= 1
    store = Registry(registry)
    assert store.verify() == []
    manifest = store.resolve("probe@1").manifest()
    assert manifest.kind == "probe" and [name for name, _ in manifest.probe.categories] == ["gsm8k", "mbpp", "other"]
    assert manifest.provenance["method"] == "probe" and manifest.provenance["hyperparameters"]["layer"] == 1
    assert manifest.provenance["data"]["name"] == "cls requests: gsm8k=train.jsonl, mbpp=mbpp.jsonl"
    assert str(tmp_path) not in json.dumps(manifest.provenance)
