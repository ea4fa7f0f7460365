"""Move experts from a source model to a target model: check each, map each, publish all or none.

The order is what `t2 transfer` shows: `align_bank` measures every expert against the target in one
pass (alignment.py), the caller prints the reports, `transfer_bank` refuses an `unrelated` one unless
forced and maps each (transfer.py, by position or by the aligned directions), and `publish_all`
publishes them together, withdrawing those already published if one fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from t2cli.errors import BadInputError
from t2cli.experts.alignment import TOP_K, Aligned, AlignmentReport, align_experts, require_alignment
from t2cli.experts.files import Expert
from t2cli.experts.lora import is_lora_expert
from t2cli.experts.manifest import new_manifest
from t2cli.experts.registry import ExpertRef, Registry
from t2cli.experts.transfer import check_mapping, check_roles, check_strength, matched_pairs, transfer_vectors
from t2cli.models.loading import LoadedModel
from t2cli.targets import TargetMatrix


@dataclass(frozen=True)
class Rebased:
    """One expert moved to the target (unpublished), with its check."""

    expert: Expert
    alignment: AlignmentReport


def target_selection(expert: Expert, target: LoadedModel, selection: str | None) -> list[TargetMatrix]:
    """The target matrices an expert goes to: `selection`, else the roles it adapts."""
    if selection is not None:
        return target.select(selection)
    roles = {info.role for info in expert.manifest.targets.values()}
    return [t for t in target.targets if t.role in roles]


def align_bank(
    experts: Mapping[str, Expert],
    source: LoadedModel,
    target: LoadedModel,
    *,
    selection: str | None = None,
    carry: bool = False,
) -> Aligned:
    """The check of every expert (caller's key) against the target; with `carry`, also the aligned z."""
    pairs: dict[str, str] = {}
    for key, expert in experts.items():
        if is_lora_expert(expert.manifest):
            raise BadInputError(f"{key} is a LoRA adapter: transfer carries SVF z only; leave it out")
        if expert.manifest.base_fingerprint != source.fingerprint:
            raise BadInputError(
                f"{key} was made for weights {expert.manifest.base_fingerprint[:12]}, not the source model's "
                f"{source.fingerprint[:12]}; pass --from the model it was trained on"
            )
        selected = target_selection(expert, target, selection)
        check_roles(expert.manifest.targets, selected)
        pairs |= matched_pairs(expert.manifest.targets, selected)
    vectors = {key: expert.z for key, expert in experts.items()}
    return align_experts(source, target, pairs, vectors, carry=carry, k=TOP_K)


def transfer_bank(
    experts: Mapping[str, Expert],
    target: LoadedModel,
    aligned: Aligned,
    *,
    mapping: str = "position",
    selection: str | None = None,
    strength: float = 1.0,
    names: Mapping[str, str] | None = None,
    force: bool = False,
) -> dict[str, Rebased]:
    """Refuse if any expert is `unrelated` to the target (unless `force`), then map each; publish nothing.

    `aligned` comes from `align_bank` (with `carry` for the aligned mapping); `names`: new names by
    key (default: the expert's). The provenance records the source version, model and fingerprint,
    the per-matrix mapping, β and the check.
    """
    check_strength(strength)
    check_mapping(mapping)
    if mapping == "aligned" and not aligned.z:
        raise BadInputError("the aligned mapping needs align_bank(..., carry=True)")
    for key, found in aligned.reports.items():
        require_alignment(found, key, force)
    done = {}
    for key, expert in experts.items():
        manifest = expert.manifest
        targets = target_selection(expert, target, selection)
        carried = aligned.z[key] if mapping == "aligned" else None
        result = transfer_vectors(expert.z, manifest.targets, targets, strength, carried)
        found = aligned.reports[key]
        provenance = {
            "kind": "transferred",
            "source": {"expert": manifest.ref, "model": manifest.base_model, "fingerprint": manifest.base_fingerprint},
            "mapping": result.mapping(),
            "strength": result.strength,
            "alignment": found.to_dict() | {"forced": found.verdict == "unrelated"},
        }
        if "categories" in manifest.provenance:  # a classifier routes over exactly these, in this order
            provenance["categories"] = manifest.provenance["categories"]
        new = new_manifest(
            name=(names or {}).get(key) or manifest.name,
            base_model=target.model_id,
            base_fingerprint=target.fingerprint,
            targets=targets,
            provenance=provenance,
            svf_rule=manifest.svf_rule,
            task=manifest.task,
            description=manifest.description,
        )
        done[key] = Rebased(Expert(new, result.z), found)
    return done


def publish_all(store: Registry, rebased: Mapping[str, Rebased]) -> dict[str, ExpertRef]:
    """Publish every expert, or none: when one fails, the versions already published are removed again
    (their numbers are retired, as any removed version's) and the error is raised."""
    published: dict[str, ExpertRef] = {}
    try:
        for key, item in rebased.items():
            published[key] = store.publish(item.expert)
    except BaseException:
        for ref in published.values():
            store.remove(ref.spec, ref.model_slug)
        raise
    return published
