"""`t2 compose`: mix registry experts with α (NAME=ALPHA terms or a YAML recipe) into a new expert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from t2cli.cli.common import print_json, settings, stdout_console
from t2cli.cli.options import BaseModelOption, JsonOption, RegistryOption


def compose_command(
    ctx: typer.Context,
    terms: Annotated[
        list[str] | None,
        typer.Argument(help="NAME=ALPHA or NAME@VERSION=ALPHA terms, e.g. math=0.6 arc@2=0.4.", show_default=False),
    ] = None,
    recipe_file: Annotated[
        Path | None,
        typer.Option("--recipe", "-r", help="YAML recipe (depth gradients, per-role α); see recipes/README.md."),
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Name of the new expert (overrides the recipe's output).")
    ] = None,
    normalize: Annotated[
        bool | None,
        typer.Option(
            "--normalize/--no-normalize", help="Scale α to sum 1 per matrix (default: the recipe's, else off)."
        ),
    ] = None,
    model: BaseModelOption = None,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compose experts, z' = Σ α_k z_k per matrix, and publish the mix as a new registry expert.

    Examples: t2 compose math=0.6 arc=0.4 -o math-mix --normalize ; t2 compose --recipe recipes/science-math.yaml
    """
    from t2cli.errors import BadInputError
    from t2cli.experts.bundled import open_registry
    from t2cli.experts.compose import compose_recipe
    from t2cli.experts.recipes import parse_recipe, recipe_from_cli, recipe_from_dict

    if bool(terms) == (recipe_file is not None):
        raise BadInputError("give NAME=ALPHA terms or --recipe FILE (one of the two); e.g. t2 compose arc=0.5 -o mix")
    if recipe_file is None:
        recipe = recipe_from_cli(terms or [], normalize=bool(normalize), output=output)
    else:
        recipe = parse_recipe(recipe_file)
        overrides = {key: value for key, value in (("output", output), ("normalize", normalize)) if value is not None}
        if overrides:
            recipe = recipe_from_dict({**recipe.to_dict(), **overrides}, str(recipe_file))
    store = open_registry(registry)
    ref = store.publish(compose_recipe(recipe, store, model))
    manifest = ref.manifest()
    pinned = manifest.provenance["recipe"]
    if json_output:
        print_json(
            {
                "ref": ref.spec,
                "model_slug": ref.model_slug,
                "path": str(ref.path),
                "matrices": len(manifest.targets),
                "recipe": pinned,
            }
        )
        return
    if settings(ctx).quiet:
        return
    table = Table(title=f"composed {ref.spec} ({ref.model_slug})", show_header=False)
    for entry in pinned["experts"]:
        table.add_row(entry["name"], escape(f"α {json.dumps(entry['alpha'])}"))
    table.add_row("normalize", "yes" if pinned["normalize"] else "no")
    table.add_row("matrices", str(len(manifest.targets)))
    table.add_row("saved to", escape(str(ref.path)))
    stdout_console().print(table)
