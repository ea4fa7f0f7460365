"""`t2 transfer`: carry experts over to another model, after a check that its singular bases match."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import print_json, settings, stdout_console
from t2cli.cli.options import JsonOption, RegistryOption, model_and_threads

if TYPE_CHECKING:
    from t2cli.experts.alignment import AlignmentReport
    from t2cli.experts.files import Expert
    from t2cli.experts.registry import ExpertRef, Registry


def _slug(spec: str | None) -> str | None:
    """The registry folder of a model spec: a local folder's is its name's, as `load_model` names it."""
    from t2cli.models.loading import slugify

    if spec is None:
        return None
    path = Path(spec).expanduser()
    return slugify(path.resolve().name if path.is_dir() else spec)


def _bank(store: Registry, slug: str) -> tuple[dict[str, Expert], list[str]]:
    """The latest version of every expert of one model (LoRA adapters set aside: they have no z to carry)."""
    from t2cli.errors import NotFoundError
    from t2cli.experts.lora import is_lora_expert

    experts, skipped = {}, []
    for name, versions in store.catalog().get(slug, {}).items():
        expert = store.ref(slug, name, versions[-1]).load()
        if is_lora_expert(expert.manifest):
            skipped.append(expert.manifest.ref)
        else:
            experts[expert.manifest.ref] = expert
    if not experts:
        raise NotFoundError(f"no SVF experts for model {slug} in {store.root}; check --from and `t2 registry list`")
    return experts, skipped


def _source(ctx: typer.Context, spec: str) -> Any:
    from t2cli.errors import BadInputError, NotFoundError

    try:
        return model_and_threads(ctx, spec, weights=False)
    except (NotFoundError, BadInputError):
        raise NotFoundError(
            f"the check needs the experts' source model {spec!r} and cannot load it; "
            "pass --from MODEL (its folder or id)"
        ) from None


def _render_check(key: str, found: AlignmentReport, source: str, target: str) -> None:
    energy = "—" if found.energy is None else f"{found.energy:.3f}"
    title = f"alignment of {key}: {source} → {target}: {found.verdict} (energy held {energy})"
    table = Table(title=escape(title))
    for column in ("role", "matrices", f"cosine top-{found.k}", "energy held", "verdict"):
        table.add_column(column, justify="left" if column in ("role", "verdict") else "right")
    for role in found.roles:
        held = "—" if role.energy is None else f"{role.energy:.3f}"
        table.add_row(role.role, str(role.matrices), f"{role.cosine:.3f}", held, role.verdict)
    stdout_console().print(table)


def _summary(ref: ExpertRef) -> dict[str, Any]:
    provenance = ref.manifest().provenance
    mapping = provenance["mapping"]
    return {
        "ref": ref.spec,
        "model_slug": ref.model_slug,
        "path": str(ref.path),
        "source": provenance["source"],
        "strength": provenance["strength"],
        "mapping": mapping["kind"],
        "layers": {"source": mapping["source_layers"], "target": mapping["target_layers"]},
        "ranks": mapping["ranks"],
        "methods": dict(Counter(m["method"] for m in mapping["matrices"])),
        "identity_roles": mapping["identity_roles"],
        "alignment": provenance["alignment"],
    }


def _render_transfer(summary: dict[str, Any], source: str, target: str) -> None:
    title = f"transferred {summary['source']['expert']} -> {summary['ref']} ({summary['model_slug']})"
    table = Table(title=escape(title), show_header=False)
    table.add_row("from", escape(f"{source} ({summary['layers']['source']} layers)"))
    table.add_row("to", escape(f"{target} ({summary['layers']['target']} layers)"))
    table.add_row("ranks", ", ".join(f"{role} {r['source']}→{r['target']}" for role, r in summary["ranks"].items()))
    table.add_row("mapping", summary["mapping"])
    table.add_row("matrices", ", ".join(f"{count} {method}" for method, count in summary["methods"].items()))
    table.add_row("kept at z = 1", ",".join(summary["identity_roles"]) or "none")
    table.add_row("strength β", f"{summary['strength']:g}")
    table.add_row("saved to", escape(summary["path"]))
    stdout_console().print(table)


def transfer_command(
    ctx: typer.Context,
    to: Annotated[
        str, typer.Option("--to", help="Target model: smollm2-135m, gemma3-270m, a local folder or an HF id.")
    ],
    spec: Annotated[str | None, typer.Argument(help="Expert: NAME (latest version) or NAME@VERSION; or --all.")] = None,
    strength: Annotated[
        float, typer.Option("--strength", help="β: z' = 1 + β(z − 1); 1 keeps the expert, 0 gives the base model.")
    ] = 1.0,
    mapping: Annotated[
        str,
        typer.Option(
            "--mapping",
            help="position: z by sorted singular-value index (any shapes); aligned: by the matching singular "
            "directions (same depth and shapes).",
        ),
    ] = "position",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Name under the target model (default: the expert's).")
    ] = None,
    targets: Annotated[
        str | None,
        typer.Option(
            "--targets", help="Target matrices (default: the roles the expert adapts); extra roles stay at z = 1."
        ),
    ] = None,
    source_model: Annotated[
        str | None,
        typer.Option(
            "--from", "--model", "-m", help="The experts' base model (default: the expert's; with --all, smollm2-135m)."
        ),
    ] = None,
    all_experts: Annotated[
        bool, typer.Option("--all", help="Every expert of the source model (latest versions), classifier included.")
    ] = False,
    check: Annotated[bool, typer.Option("--check", help="Only print the alignment check; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Transfer even when the check says `unrelated`.")] = False,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Transfer experts to another model and publish them under that model's registry folder.

    Each is checked first (aligned, partial, unrelated: see --check); unrelated is refused unless --force.

    Example: t2 transfer arc --to ./smollm2-135m-v2 --mapping aligned   (or --all, or --check)
    """
    from t2cli.errors import BadInputError
    from t2cli.experts.bundled import open_registry
    from t2cli.experts.rebase import align_bank, publish_all, transfer_bank
    from t2cli.experts.transfer import check_mapping, check_strength
    from t2cli.models.builtin import DEFAULT_MODEL
    from t2cli.models.matching import parse_roles

    check_strength(strength)  # refuse bad options before loading any model
    check_mapping(mapping)
    if targets is not None:
        parse_roles(targets)
    if (spec is None) != all_experts:
        raise BadInputError("give one expert NAME[@V] or --all, not both or neither")
    if all_experts and output:
        raise BadInputError("--all keeps each expert's name; leave out -o")
    store = open_registry(registry)
    skipped: list[str] = []
    if all_experts:
        experts, skipped = _bank(store, _slug(source_model or DEFAULT_MODEL) or DEFAULT_MODEL)
    else:
        expert = store.resolve(spec or "", _slug(source_model)).load()
        experts = {expert.manifest.ref: expert}
    source_spec = source_model or next(iter(experts.values())).manifest.base_model
    source = _source(ctx, source_spec)
    target = model_and_threads(ctx, to, weights=False)
    aligned = align_bank(experts, source, target, selection=targets, carry=mapping == "aligned" and not check)
    quiet = settings(ctx).quiet or json_output
    if not quiet:
        for key, found in aligned.reports.items():
            _render_check(key, found, source.model_id, target.model_id)
    if check:
        if json_output:
            print_json({"check": {key: found.to_dict() for key, found in aligned.reports.items()}, "skipped": skipped})
        return
    names = {key: output for key in experts} if output else None
    rebased = transfer_bank(
        experts, target, aligned, mapping=mapping, selection=targets, strength=strength, names=names, force=force
    )
    summaries = [_summary(ref) for ref in publish_all(store, rebased).values()]
    if json_output:
        print_json(summaries[0] if not all_experts else {"experts": summaries, "skipped": skipped})
        return
    if settings(ctx).quiet:
        return
    for summary in summaries:
        _render_transfer(summary, source.model_id, target.model_id)
    if skipped:
        stdout_console().print(escape(f"skipped (LoRA adapters, no z to carry): {', '.join(skipped)}"))
