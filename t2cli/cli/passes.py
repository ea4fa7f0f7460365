"""What `t2 run`, `t2 dispatch` and `t2 serve` share: their options (the strategy, --config, what they run on,
and the strategy settings generated from StrategyOptions), reading prompt lines, opening the model, engine and
registry, and the few-shot progress bar."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import Field, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from t2cli.adapt.options import DEFAULT_ADAPT, StrategyOptions
from t2cli.adapt.strategies import ROUTERS, adapt_names, readers
from t2cli.cli.common import given_on_command_line, settings, stderr_console
from t2cli.cli.options import (
    AdaptOption,
    Command,
    EngineSettings,
    group_parameters,
    model_and_threads,
    with_parameters,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.progress import Progress, TaskID

    from t2cli.adapt.cem import Score
    from t2cli.adapt.runio import InputLine
    from t2cli.engines.slot import ExpertSlot
    from t2cli.models.loading import LoadedModel


_PANEL = "Strategy settings (--adapt; also read from --config)"

StrategyConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE.yaml",
        help="YAML of strategy settings: the options under Strategy settings, by field name (`route_tokens: 32`, "
        "`experts: arc,gsm8k`, `cem_seed: 1`). Options given on the command line win.",
    ),
]


@dataclass(frozen=True)
class Routing:
    """Pass 1's strategy and the file of its settings: declared once for every command that routes."""

    adapt: AdaptOption = DEFAULT_ADAPT
    config: StrategyConfigOption = None


def _strategy_parameter(item: Field[Any], hint: Any) -> inspect.Parameter:
    """The option of one StrategyOptions field: flag, type, default and help come from the dataclass; the
    help names the strategies that read it, unless all of them do."""
    meta = item.metadata
    users = readers(item.name)
    help_text = meta["help"] if set(users) == set(ROUTERS.names()) else f"{', '.join(users)}: {meta['help']}"
    flags = meta["flags"] or (f"--{item.name.replace('_', '-')}",)
    extra = {key: meta[key] for key in ("metavar", "show_default") if key in meta}
    option = typer.Option(*flags, help=help_text, rich_help_panel=_PANEL, **extra)
    kind = meta["cli_type"] or hint
    default = None if meta["cli_type"] is not None else item.default
    return inspect.Parameter(
        item.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def with_pass_options(command: Command) -> Command:
    """Give a command (one that takes `**settings`) the options of Routing, EngineSettings and StrategyOptions."""
    hints = typing.get_type_hints(StrategyOptions)
    generated = [_strategy_parameter(item, hints[item.name]) for item in fields(StrategyOptions)]
    return with_parameters(command, [*group_parameters(Routing), *group_parameters(EngineSettings), *generated])


def strategy_options(ctx: typer.Context, config: Path | None) -> StrategyOptions:
    """The StrategyOptions of a command: the options given on its command line over the --config file."""
    names = [item.name for item in fields(StrategyOptions)]
    return StrategyOptions.load(config, {name: ctx.params[name] for name in names if given_on_command_line(ctx, name)})


def check_adapt_name(adapt: str, registry: Path | None) -> None:
    """Refuse, before any model loads, an --adapt that is neither a strategy nor an expert some model has."""
    from t2cli.experts.bundled import open_registry

    if adapt not in adapt_names():
        open_registry(registry).check_known(adapt, "--adapt")


def read_prompt_lines(ctx: typer.Context, path: Path, *, strict: bool = False) -> list[InputLine]:
    """The valid lines of a prompts file; bad ones are reported by line number (and stop with --strict)."""
    from t2cli.adapt.runio import read_inputs
    from t2cli.errors import BadInputError

    lines, problems = read_inputs(path)
    if problems and strict:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BadInputError(f"{problems[0].describe(path)}{more}; fix the lines or drop --strict to skip them")
    if not settings(ctx).quiet:
        for problem in problems:
            stderr_console().print(f"skipped {problem.describe(path)}", markup=False, soft_wrap=True)
    if not lines:
        raise BadInputError(f"{path} has no valid prompt lines; each needs `prompt` or `messages`")
    return lines


def check_routed_lengths(lines: Sequence[InputLine], loaded: LoadedModel, route_tokens: int | None) -> None:
    """When pass 1 reads whole requests (--route-tokens 0), each must fit the model's context."""
    from t2cli.adapt.options import check_route_tokens
    from t2cli.engines.context import check_prompt_tokens

    if check_route_tokens(route_tokens) is None:
        check_prompt_tokens([(f"line {line.number}", line.prompt) for line in lines], loaded)


def open_slot(ctx: typer.Context, on: EngineSettings) -> tuple[LoadedModel, ExpertSlot]:
    """Load the model, start the engine, and wrap it with the registry in an ExpertSlot."""
    from t2cli.engines import check_engine, make_engine, needs_model
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.bundled import open_registry

    check_engine(on.engine, on.tensor_parallel)  # refuse before spending seconds on the model
    # An engine that loads the weights itself: t2 then reads only the checkpoint's files, not a second model.
    loaded = model_and_threads(ctx, on.model, weights=needs_model(on.engine, on.tensor_parallel))
    started = make_engine(on.engine, loaded, batch_size=on.batch_size, tensor_parallel=on.tensor_parallel)
    return loaded, ExpertSlot(started, open_registry(on.registry), loaded)


def search_callback(progress: Progress) -> Callable[[int, int, Score], None]:
    """Feeds a few-shot search's iterations to a progress bar, added on the first one (most runs never search)."""
    bar: list[TaskID] = []

    def advance(iteration: int, iterations: int, score: Score) -> None:
        if not bar:
            bar.append(progress.add_task("searching α", total=iterations))
        progress.update(bar[0], completed=iteration + 1, description=f"searching α (best {score[0]:.3f})")

    return advance
