"""The bank pass 1 routes over: the latest trained expert per task of one base model, and `other`.

The experts of one base model in the registry (latest versions) whose manifest names a task; each
task is a category, and `other` (anything else) keeps the base weights. By default the bank holds the
trained, transferred and imported experts; composed and searched ones are mixtures of those (their
task would duplicate a member's) and the `cls` expert is the classifier, so they are left out unless
named with `experts=`. Two bank experts with the same task are refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError, NotFoundError
from t2cli.tasks.classification import OTHER, OTHER_DESCRIPTION
from t2cli.tasks.registry import get_task

if TYPE_CHECKING:
    from t2cli.experts.manifest import Manifest
    from t2cli.experts.registry import ExpertRef, Registry


CLASSIFIER_TASK = "cls"


BANK_KINDS = ("trained", "transferred", "imported")


@dataclass(frozen=True)
class BankExpert:
    ref: ExpertRef
    task: str
    description: str


@dataclass(frozen=True)
class Bank:
    model_slug: str
    experts: tuple[BankExpert, ...]

    @property
    def categories(self) -> list[tuple[str, str]]:
        """(name, description) of every category, the bank's tasks then `other`."""
        return [(e.task, e.description) for e in self.experts] + [(OTHER, OTHER_DESCRIPTION)]

    def expert_for(self, label: str) -> str | None:
        return next((e.ref.spec for e in self.experts if e.task == label), None)


def task_description(manifest: Manifest) -> str:
    """The built-in task's one-sentence description (what the `cls` task trains with), else the
    manifest's description, else the task name."""
    try:
        return get_task(manifest.task).description
    except (BadInputError, NotFoundError):
        return manifest.description or str(manifest.task)


def load_bank(registry: Registry, model_slug: str, names: Sequence[str] = ()) -> Bank:
    """The bank of a model: the named experts, or every eligible expert's latest version."""
    if names:
        refs = [registry.resolve(name, model_slug) for name in names]
    else:
        latest = registry.catalog().get(model_slug, {})
        refs = [registry.ref(model_slug, name, versions[-1]) for name, versions in latest.items()]
    experts = []
    for ref in refs:
        manifest = ref.manifest()
        if names and (manifest.task is None or manifest.task == CLASSIFIER_TASK):
            raise BadInputError(
                f"expert {ref.spec} has no task to route to (task: {manifest.task}); drop it from --experts"
            )
        if names or (manifest.provenance["kind"] in BANK_KINDS and manifest.task not in (None, CLASSIFIER_TASK)):
            experts.append(BankExpert(ref, str(manifest.task), task_description(manifest)))
    if not experts:
        raise NotFoundError(
            f"no experts for model {model_slug} in {registry.root}; train some (`t2 train --task gsm8k`), "
            "pass --registry, or use --adapt none"
        )
    by_task = Counter(e.task for e in experts)
    clash = next((task for task, count in by_task.items() if count > 1), None)
    if clash is not None:
        specs = ", ".join(e.ref.spec for e in experts if e.task == clash)
        raise BadInputError(f"several experts serve task {clash!r} ({specs}); pick one per task with --experts")
    if OTHER in by_task:
        raise BadInputError(f"an expert's task is named {OTHER!r}, which means the base model; rename the task")
    return Bank(model_slug, tuple(sorted(experts, key=lambda e: e.task)))


def find_classifier(registry: Registry, model_slug: str, name: str | None = None) -> ExpertRef:
    """The named classifier expert, else the model's only expert whose task is `cls` (probes are not experts)."""
    if name is not None:
        return registry.resolve(name, model_slug)
    latest = registry.catalog().get(model_slug, {})
    found = [registry.ref(model_slug, n, versions[-1]) for n, versions in latest.items()]
    found = [ref for ref in found if ref.manifest().task == CLASSIFIER_TASK and ref.manifest().kind == "expert"]
    if not found:
        raise NotFoundError(
            f"no classifier expert (task cls) for model {model_slug} in {registry.root}; "
            "train one with `t2 train --task cls --experts arc,gsm8k,mbpp`"
        )
    if len(found) > 1:
        raise BadInputError(
            f"several classifier experts ({', '.join(r.spec for r in found)}); pick one with --classifier NAME"
        )
    return found[0]


def find_probe(registry: Registry, model_slug: str, name: str | None = None) -> ExpertRef:
    """The named probe, else the latest version of the model's only probe."""
    if name is not None:
        ref = registry.resolve(name, model_slug)
        if ref.manifest().kind != "probe":
            raise BadInputError(
                f"{ref.spec} is not a probe; name one with --classifier, or train one with "
                "`t2 train --task cls --method probe --layer L`"
            )
        return ref
    latest = registry.catalog().get(model_slug, {})
    found = [registry.ref(model_slug, n, versions[-1]) for n, versions in latest.items()]
    found = [ref for ref in found if ref.manifest().kind == "probe"]
    if not found:
        raise NotFoundError(
            f"no probe for model {model_slug} in {registry.root}; train one with "
            "`t2 train --task cls --experts arc,math,mbpp --method probe --layer L`"
        )
    if len(found) > 1:
        raise BadInputError(f"several probes ({', '.join(r.spec for r in found)}); pick one with --classifier NAME")
    return found[0]
