"""`t2 transfer`: carry an expert over to another model (layers by relative depth, spectra resampled)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import print_json, settings, stdout_console
from t2cli.cli.options import JsonOption, RegistryOption, SpecArgument, chosen_registry, model_and_threads, model_slug


def transfer_command(
    ctx: typer.Context,
    spec: SpecArgument,
    to: Annotated[
        str, typer.Option("--to", help="Target model: smollm2-135m, gemma3-270m, a local folder or an HF id.")
    ],
    strength: Annotated[
        float, typer.Option("--strength", help="β: z' = 1 + β(z − 1); 1 keeps the expert, 0 gives the base model.")
    ] = 1.0,
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
        typer.Option("--from", "--model", "-m", help="The expert's base model, when its name exists for several."),
    ] = None,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Transfer an expert to another model and publish it under that model's registry folder.

    Example: t2 transfer arc --to gemma3-270m --strength 0.8
    """
    from t2cli.experts.transfer import check_strength, transfer_expert
    from t2cli.models.matching import parse_roles

    check_strength(strength)  # refuse a bad --strength or --targets before loading any model
    if targets is not None:
        parse_roles(targets)
    store = chosen_registry(registry)
    expert = store.resolve(spec, model_slug(source_model)).load()
    loaded = model_and_threads(ctx, to)
    ref = store.publish(transfer_expert(expert, loaded, selection=targets, strength=strength, name=output))
    provenance = ref.manifest().provenance
    mapping = provenance["mapping"]
    summary = {
        "ref": ref.spec,
        "model_slug": ref.model_slug,
        "path": str(ref.path),
        "source": provenance["source"],
        "strength": provenance["strength"],
        "layers": {"source": mapping["source_layers"], "target": mapping["target_layers"]},
        "ranks": mapping["ranks"],
        "methods": dict(Counter(m["method"] for m in mapping["matrices"])),
        "identity_roles": mapping["identity_roles"],
    }
    if json_output:
        print_json(summary)
        return
    if settings(ctx).quiet:
        return
    title = f"transferred {provenance['source']['expert']} -> {ref.spec} ({ref.model_slug})"
    table = Table(title=escape(title), show_header=False)
    table.add_row("from", escape(f"{provenance['source']['model']} ({mapping['source_layers']} layers)"))
    table.add_row("to", escape(f"{loaded.model_id} ({mapping['target_layers']} layers)"))
    table.add_row("ranks", ", ".join(f"{role} {r['source']}→{r['target']}" for role, r in mapping["ranks"].items()))
    table.add_row("matrices", ", ".join(f"{count} {method}" for method, count in summary["methods"].items()))
    table.add_row("kept at z = 1", ",".join(mapping["identity_roles"]) or "none")
    table.add_row("strength β", f"{provenance['strength']:g}")
    table.add_row("saved to", escape(str(ref.path)))
    stdout_console().print(table)
