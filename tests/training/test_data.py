"""How provenance identifies training data (name, revision, sha256), and where cls finds its members' data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.experts.manifest import Manifest
from t2cli.tasks.base import Example
from t2cli.training.data import classification_task, data_identity, data_sha256, recorded_source, training_task
from tests.helpers import make_expert

EXAMPLES = [Example(id="1", question="2+2?", reference="4")]


def test_data_is_identified_by_name_revision_and_hash_not_by_a_path(tmp_path) -> None:
    local = tmp_path / "deep" / "arc_easy"
    expected = {"name": "arc_easy", "revision": None, "sha256": data_sha256(EXAMPLES)}
    assert data_identity(str(local), EXAMPLES) == expected
    url = "hf://datasets/allenai/ai2_arc@3a1b2c/ARC-Easy/train.jsonl"
    assert data_identity(url, EXAMPLES)["name"] == "hf://datasets/allenai/ai2_arc/ARC-Easy/train.jsonl"
    assert data_identity(url, EXAMPLES)["revision"] == "3a1b2c"
    assert data_identity(None, EXAMPLES)["name"] is None


def _manifest(data) -> Manifest:
    manifest = make_expert().manifest
    return replace(manifest, provenance={**manifest.provenance, "data": data})


def test_cls_finds_member_data_again_from_new_and_old_manifests() -> None:
    url = "hf://datasets/allenai/ai2_arc@3a1b2c/ARC-Easy/train.jsonl"
    assert recorded_source(_manifest(data_identity(url, EXAMPLES))) == url
    assert recorded_source(_manifest({"name": None, "revision": None, "sha256": "ab" * 32})) is None
    assert recorded_source(_manifest("/work/shared/data/arc_easy")) == "/work/shared/data/arc_easy"  # old manifests
    with pytest.raises(BadInputError, match="give its path with --data arc=PATH"):
        recorded_source(_manifest({"name": "arc_easy", "revision": None, "sha256": "ab" * 32}))


def test_unknown_tasks_are_not_found_before_any_model_is_needed() -> None:
    with pytest.raises(NotFoundError, match="unknown task 'nosuchtask'"):
        training_task("nosuchtask", seed=0)
    assert training_task("cls", seed=0) is None
    assert training_task("gsm8k", seed=0).name == "gsm8k"


def test_cls_data_must_be_task_path_pairs(tmp_path) -> None:
    with pytest.raises(BadInputError, match="TASK=PATH"):
        classification_task("arc,gsm8k", "/data/arc_easy", 0, registry=None, model_slug="tiny")


def test_cls_categories_may_be_tasks_without_an_expert(tmp_path) -> None:
    """`--experts arc,mbpp` with no mbpp expert: mbpp is still a category (its requests keep the base)."""
    from t2cli.experts.registry import Registry
    from tests.helpers import publish_expert, tiny_loaded

    loaded = tiny_loaded()
    registry = Registry(tmp_path / "reg")
    publish_expert(registry, loaded, "arc", "arc")
    given = "arc=/data/arc_easy,mbpp=/data/mbpp.jsonl"
    task = classification_task("arc,mbpp", given, 0, registry, loaded.slug)
    assert [name for name, _ in task.categories] == ["arc", "mbpp", "other"]
    assert task.sources == {"arc": "/data/arc_easy", "mbpp": "/data/mbpp.jsonl"}
    with pytest.raises(NotFoundError, match="nosuch"):
        classification_task("arc,nosuch", None, 0, registry, loaded.slug)
    with pytest.raises(NotFoundError, match="expert .mbpp. not found"):  # a version names an expert
        classification_task("arc,mbpp@2", None, 0, registry, loaded.slug)
