"""Data sources: JSONL files (plain and gzip), hf://datasets URLs, packaged copies, and split cutting."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks import sources
from t2cli.tasks.base import Record
from t2cli.tasks.sources import packaged_file, read_jsonl, resolve_data_file
from t2cli.tasks.splits import holdout_split


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
        resolve_data_file(None, task="demo", hint="pass --data PATH")
    with pytest.raises(NotFoundError, match="missing.jsonl"):
        resolve_data_file(tmp_path / "missing.jsonl", task="demo", hint="")


def test_hf_url_downloads_with_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = _write_jsonl(tmp_path / "cached.jsonl", [{"a": 1}])
    calls = []

    def fake_download(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(local)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert resolve_data_file("hf://datasets/owner/name@v1/sub/file.jsonl", task="demo", hint="") == local
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


def _good_then_bomb(path: Path, rows: list[dict[str, object]]) -> Path:
    """A .jsonl.gz whose first lines are `rows` and whose rest is a bomb of blank lines (past t2's line cap)
    and then garbage: reading it whole is an error, reading only the first records is not."""
    good = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(good + b"\n" * 2_100_000 + b"garbage\n"))
    return path


def test_read_jsonl_with_a_limit_stops_before_the_rest_of_the_file(tmp_path: Path) -> None:
    path = _good_then_bomb(tmp_path / "data.jsonl.gz", [{"a": 1}, {"a": 2}])
    assert [record.data for record in read_jsonl(path, limit=2)] == [{"a": 1}, {"a": 2}]
    assert read_jsonl(path, limit=0) == []
    with pytest.raises(BadInputError, match="more than 2,000,000 lines"):
        read_jsonl(path)
    plain = tmp_path / "data.jsonl"
    plain.write_text('{"a": 1}\n\n{"a": 2}\nnot JSON\n', encoding="utf-8")
    assert len(read_jsonl(plain, limit=2)) == 2  # blank lines are not records


def test_a_task_loading_the_first_n_of_a_test_file_reads_no_further(tmp_path: Path) -> None:
    from t2cli.tasks.registry import resolve_task

    choices = [{"text": "x", "label": "A"}, {"text": "y", "label": "B"}]
    arc_rows = [{"id": f"q{n}", "question": {"stem": "?", "choices": choices}, "answerKey": "A"} for n in range(3)]
    path = _good_then_bomb(tmp_path / "arc.jsonl.gz", arc_rows)
    assert [example.id for example in resolve_task("arc").load(path, "test", 2)] == ["q0", "q1"]
    gsm = _good_then_bomb(tmp_path / "gsm.jsonl.gz", [{"question": "1 + 1?", "answer": "#### 2"}])
    assert len(resolve_task("gsm8k").load(gsm, "test", 1)) == 1
    spec = tmp_path / "t.yaml"
    spec.write_text(
        f"name: t\ndescription: d\ndata: {_good_then_bomb(tmp_path / 't.jsonl.gz', [{'q': 'a', 'a': 'b'}])}\n"
        "prompt: '{q}'\nanswer: a\nscorer: exact\n"
    )
    assert len(resolve_task(str(spec)).load(None, "test", 1)) == 1
    # train/validation are a seeded cut of the whole file: every line is read, and the bomb is refused.
    with pytest.raises(BadInputError, match="more than 2,000,000 lines"):
        resolve_task(str(spec)).load(None, "train", 1)
