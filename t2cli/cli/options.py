"""Options several commands share, declared once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from t2cli.cli.common import settings

if TYPE_CHECKING:
    from t2cli.models import LoadedModel

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
