"""A task's training and validation examples, and how provenance identifies them (name, revision, sha256)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.base import Example, Task
from t2cli.tasks.built_data import built_revision, is_built

if TYPE_CHECKING:
    from t2cli.experts.manifest import Manifest
    from t2cli.experts.registry import Registry

HF_PREFIX = "hf://datasets/"


def data_sha256(examples: Sequence[Example]) -> str:
    """Identifies the training data by content (ids, questions, references), not by file path."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.question, example.reference], default=str).encode())
    return digest.hexdigest()


def data_identity(data: str | None, examples: Sequence[Example]) -> dict[str, Any]:
    """What provenance records of the training data: a name that means the same on any machine, the
    revision, and the content hash — never a path of the training machine.

    name: the hf://datasets/OWNER/NAME/FILE URL (its @REVISION under `revision`), data t2 builds
    (t2:NAME/FILE, its package's version under `revision`), a local file or folder's own name, or None
    for the task's own data.
    """
    if data is not None and is_built(data):
        return {"name": data, "revision": built_revision(data), "sha256": data_sha256(examples)}
    name, revision = (None, None) if data is None else _split_revision(data)
    if name is not None and not name.startswith(HF_PREFIX):
        name = Path(name).expanduser().resolve().name
    return {"name": name, "revision": revision, "sha256": data_sha256(examples)}


def recorded_source(manifest: Manifest) -> str | None:
    """Where an expert's training data can be loaded again: the task's own data (None), an hf:// URL
    at its revision, or the path manifests recorded before data identities. A local file's name alone
    locates nothing, so that data must be given again."""
    recorded = manifest.provenance.get("data")
    if not isinstance(recorded, dict):
        return recorded
    name, revision = recorded.get("name"), recorded.get("revision")
    if name is None:
        return None
    if is_built(name):  # t2 builds it again on any machine
        return name
    if not name.startswith(HF_PREFIX):
        raise BadInputError(
            f"expert {manifest.ref} was trained on local data {name!r}; give its path with --data {manifest.task}=PATH"
        )
    return name if revision is None else _join_revision(name, revision)


def training_task(task_name: str, seed: int) -> Task | None:
    """The task, resolved before the model loads (None for `cls`, built from experts of the model).

    An unknown name is NotFoundError (exit 3). ARC's choices are shuffled (seeded) so that a
    preference for one letter earns nothing.
    """
    if task_name == "cls":
        return None
    known = trainable_task_names()
    if not task_name.endswith((".yaml", ".yml")) and task_name.partition(":")[0] not in known:
        raise NotFoundError(f"unknown task {task_name!r}; use one of {', '.join(known)}, cls, or a YAML task spec")
    return _seeded_task(task_name, seed)


def trainable_task_names() -> list[str]:
    """The built-in tasks an expert is trained on by name (not `cls`, built from them, nor `jsonl`)."""
    from t2cli.tasks.registry import task_names

    return [name for name in task_names() if name not in ("cls", "jsonl")]


def _seeded_task(task_name: str, seed: int) -> Task:
    """The task by name; ARC's choices shuffled with the run's seed."""
    from t2cli.tasks.registry import resolve_task

    return resolve_task(task_name, **({"shuffle_seed": seed} if task_name == "arc" else {}))


def classification_task(experts: str | None, data: str | None, seed: int, registry: Registry, model_slug: str) -> Task:
    """The `cls` task over the experts named in `experts`: their manifests give the categories (their
    tasks) and the data each was trained on; `data` (TASK=PATH,...) gives or replaces a member's data."""
    from t2cli.tasks.registry import get_task

    if not experts:
        raise BadInputError("--task cls needs --experts a,b,c: the experts whose tasks are the categories")
    given = _member_data(data)
    members, sources = [], {}
    for spec in (item.strip() for item in experts.split(",")):
        manifest = _category_expert(spec, registry, model_slug)
        task_name = manifest.task if manifest is not None else spec
        if not task_name:
            raise BadInputError(f"expert {spec} records no task; it cannot be a category of cls")
        members.append(_seeded_task(task_name, seed))
        if task_name in given:
            sources[task_name] = given[task_name]
        elif manifest is not None:
            sources[task_name] = recorded_source(manifest)
    sources |= given  # a task that is no member is refused by the cls task, naming it
    return get_task("cls", tasks=members, sources=sources, seed=seed)


def _category_expert(spec: str, registry: Registry, model_slug: str) -> Manifest | None:
    """The expert a cls category is named after; None for a bare task name with no expert (its requests
    are then learnt as a category that keeps the base weights, as the bank has nothing better)."""
    try:
        return registry.resolve(spec, model_slug).manifest()
    except NotFoundError:
        if spec in trainable_task_names():
            return None
        raise


def _member_data(data: str | None) -> dict[str, str]:
    """`--data` of a cls run: TASK=PATH pairs, comma-separated."""
    if data is None:
        return {}
    pairs = [item.partition("=") for item in data.split(",")]
    if any(not name.strip() or not sep or not path.strip() for name, sep, path in pairs):
        raise BadInputError(f"--data {data!r}: cls takes its members' data as TASK=PATH[,TASK=PATH]")
    return {name.strip(): path.strip() for name, _, path in pairs}


def _split_revision(source: str) -> tuple[str, str | None]:
    """hf://datasets/OWNER/NAME@REV/FILE -> (hf://datasets/OWNER/NAME/FILE, REV); other sources as they are."""
    if not source.startswith(HF_PREFIX):
        return source, None
    owner, repo, file = _hf_parts(source)
    repo, _, revision = repo.partition("@")
    return f"{HF_PREFIX}{owner}/{repo}/{file}", revision or None


def _join_revision(url: str, revision: str) -> str:
    owner, repo, file = _hf_parts(url)
    return f"{HF_PREFIX}{owner}/{repo}@{revision}/{file}"


def _hf_parts(url: str) -> list[str]:
    return [*url.removeprefix(HF_PREFIX).split("/", 2), "", ""][:3]
