"""Options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from t2cli.cli.common import settings

if TYPE_CHECKING:
    from t2cli.models import LoadedModel
    from t2cli.store import Registry

ModelArgument = Annotated[
    str | None,
    typer.Argument(help="Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id."),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model: smollm2-135m (default), gemma3-270m, a local folder or an HF id."),
]
TargetsOption = Annotated[
    str | None,
    typer.Option("--targets", help="Matrices to adapt: all (default), mlp, attn, or roles like q,v,down."),
]


def model_and_threads(ctx: typer.Context, spec: str | None) -> LoadedModel:
    """Apply --threads, then load the model spec."""
    from t2cli.config import configure_threads
    from t2cli.models import load_model

    configure_threads(settings(ctx).threads)
    return load_model(spec)


RegistryOption = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="Registry root (default: $T2_REGISTRY, else ./registry if it exists, else ~/.cache/t2/registry).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
BaseModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Base model (id or registry folder name) when a name exists for several."),
]
SpecArgument = Annotated[str, typer.Argument(help="Expert: NAME (latest version) or NAME@VERSION.")]


def open_registry(root: Path | None) -> Registry:
    """The registry the options choose; the user-level one first takes in the bundled bank."""
    from t2cli.store import open_registry

    return open_registry(root)


def model_slug(model: str | None) -> str | None:
    from t2cli.models import slugify

    return slugify(model) if model else None
