"""Data sources: JSONL files (plain and gzip), hf://datasets URLs, packaged copies, and split cutting."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks import sources
from t2cli.tasks.base import Record
from t2cli.tasks.sources import holdout_split, packaged_file, read_jsonl, resolve_source


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_read_jsonl_skips_blank_lines_and_records_positions(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    records = read_jsonl(path)
    assert [(record.data, record.index, record.where) for record in records] == [
        ({"a": 1}, 0, f"{path}:1"),
        ({"a": 2}, 1, f"{path}:3"),
    ]


def test_read_jsonl_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write('{"a": 1}\n')
    assert read_jsonl(path)[0].data == {"a": 1}


@pytest.mark.parametrize(("content", "line"), [('{"a": 1}\n{"a": \n', 2), ('{"a": 1}\n\n[1, 2]\n', 3)])
def test_malformed_line_names_file_and_line(tmp_path: Path, content: str, line: int) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"bad\.jsonl:{line}:"):
        read_jsonl(path)


def test_unreadable_file_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(BadInputError, match="cannot read"):
        read_jsonl(path)


def test_missing_sources_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="pass --data"):
        resolve_source(None, task="demo", hint="pass --data PATH")
    with pytest.raises(NotFoundError, match="missing.jsonl"):
        resolve_source(tmp_path / "missing.jsonl", task="demo", hint="")


def test_hf_url_downloads_with_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = _write_jsonl(tmp_path / "cached.jsonl", [{"a": 1}])
    calls = []

    def fake_download(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(local)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert resolve_source("hf://datasets/owner/name@v1/sub/file.jsonl", task="demo", hint="") == local
    assert calls == [{"repo_id": "owner/name", "filename": "sub/file.jsonl", "revision": "v1", "repo_type": "dataset"}]


def test_hf_url_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs: object) -> str:
        raise LocalEntryNotFoundError("no connection and not cached")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(NotFoundError, match="cannot download"):
        sources.download_hf("hf://datasets/owner/name/file.jsonl")
    with pytest.raises(BadInputError, match="hf://datasets/OWNER/NAME"):
        sources.download_hf("hf://owner/name/file.jsonl")


def test_packaged_file_is_found_from_the_distribution_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = tmp_path / "fake_data_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-data-pkg\nVersion: 1.0\n")
    (info / "RECORD").write_text("fake_data_pkg/data/x.jsonl,,\nfake_data_pkg/data/gone.jsonl,,\n")
    data = tmp_path / "fake_data_pkg" / "data"
    data.mkdir(parents=True)
    (data / "x.jsonl").write_text("{}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert packaged_file("fake-data-pkg", "fake_data_pkg/data/x.jsonl") == data / "x.jsonl"
    assert packaged_file("fake-data-pkg", "fake_data_pkg/data/gone.jsonl") is None
    assert packaged_file("fake-data-pkg", "fake_data_pkg/data/other.jsonl") is None
    assert packaged_file("no-such-distribution-t2", "x") is None


def test_holdout_split_is_a_fixed_partition() -> None:
    records = [Record({"n": n}, n, f"f:{n}") for n in range(50)]
    train = holdout_split(records, "train", "demo")
    validation = holdout_split(records, "validation", "demo")
    assert len(validation) == 5 and len(train) == 45
    assert {r.index for r in train} | {r.index for r in validation} == set(range(50))
    assert not {r.index for r in train} & {r.index for r in validation}
    assert validation == holdout_split(records, "validation", "demo")  # deterministic
    assert [r.index for r in validation] == sorted(r.index for r in validation)  # file order kept
    assert holdout_split(records, "test", "demo") == records
    with pytest.raises(BadInputError, match="use one of: train, validation, test"):
        holdout_split(records, "dev", "demo")
