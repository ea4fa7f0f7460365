"""Options several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from t2cli.adapt.strategies import adapt_names
from t2cli.cli.common import settings
from t2cli.engines import engine_help

if TYPE_CHECKING:
    from t2cli.device import Placement
    from t2cli.experts.registry import Registry
    from t2cli.models.loading import LoadedModel

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


def placement(ctx: typer.Context) -> Placement:
    """The device and dtype that --device / --dtype (or $T2_DEVICE / $T2_DTYPE) resolve to here."""
    from t2cli.device import resolve_placement

    return resolve_placement(settings(ctx).device, settings(ctx).dtype)


def model_and_threads(
    ctx: typer.Context, spec: str | None, *, device: str | None = None, weights: bool = True
) -> LoadedModel:
    """Apply --threads, then load the model spec on the --device / --dtype placement (`device` overrides
    the device: a launched process's own GPU); `weights=False` skips building it where files suffice (vLLM)."""
    from t2cli.config import configure_threads
    from t2cli.models.loading import load_model

    configure_threads(settings(ctx).threads)
    place = placement(ctx)
    return load_model(spec, dtype=place.torch_dtype, device=device or place.device, weights=weights)


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


def chosen_registry(root: Path | None) -> Registry:
    """The registry the options choose; the user-level one first takes in the bundled bank."""
    from t2cli.experts.bundled import open_registry

    return open_registry(root)


def model_slug(model: str | None) -> str | None:
    from t2cli.models.loading import slugify

    return slugify(model) if model else None


EngineOption = Annotated[str, typer.Option("--engine", envvar="T2_ENGINE", help=engine_help())]


TensorParallelOption = Annotated[
    int,
    typer.Option("--tp", help="GPUs to shard the model over (tensor parallelism), for an engine that takes it.", min=1),
]


PromptsArgument = Annotated[
    Path, typer.Argument(help="JSONL prompts: {id, prompt | messages, task?} per line.", show_default=False)
]


BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")]


PlotOption = Annotated[
    Path | None,
    typer.Option(
        "--plot", metavar="FILE.png", help="Also draw the figure to this PNG file (needs pip install 't2cli[plots]')."
    ),
]


def check_plot(path: Path | None) -> Path | None:
    """Refuse a --plot that cannot be drawn (no matplotlib, not .png) before any model loads."""
    from t2cli.plots.style import check_plot_target

    return None if path is None else check_plot_target(path)


AdaptOption = Annotated[
    str, typer.Option("--adapt", "-a", help=f"{', '.join(adapt_names())}, or an expert name[@version].")
]
