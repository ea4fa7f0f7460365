"""Options several commands share, declared once: each as an annotated type (flag, help), and the groups
several commands take whole as dataclasses whose fields give each option's default too."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from t2cli.adapt.strategies import adapt_names
from t2cli.cli.common import settings
from t2cli.engines import engine_help

if TYPE_CHECKING:
    from t2cli.device import Placement
    from t2cli.models.loading import LoadedModel

Command = TypeVar("Command", bound=Callable[..., Any])
Group = TypeVar("Group")

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


@dataclass(frozen=True)
class EngineSettings:
    """What a command that generates runs on: the model, the registry of its experts, the engine and its
    batches. Each field's annotation is its option and its default the option's (`with_options`)."""

    model: ModelOption = None
    registry: RegistryOption = None
    engine: EngineOption = "auto"
    tensor_parallel: TensorParallelOption = 1
    batch_size: BatchSizeOption = 16


def group_parameters(group: type) -> list[inspect.Parameter]:
    """A dataclass's fields as keyword-only command parameters: the annotation is the option, the default its."""
    hints = typing.get_type_hints(group, include_extras=True)
    kind = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter(item.name, kind, default=item.default, annotation=hints[item.name]) for item in fields(group)
    ]


def with_parameters(command: Command, generated: Sequence[inspect.Parameter]) -> Command:
    """Give a command (one that takes `**settings`) the `generated` options after its own."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = inspect.Signature([*own, *generated])  # type: ignore[attr-defined]
    return command


def with_options(*groups: type) -> Callable[[Command], Command]:
    """A decorator giving a command the options of each group (a dataclass like EngineSettings)."""
    return lambda command: with_parameters(command, [p for group in groups for p in group_parameters(group)])


def group_values(group: type[Group], params: Mapping[str, Any]) -> Group:
    """The group a command's parameters (`ctx.params`) hold."""
    return group(**{item.name: params[item.name] for item in fields(group)})
