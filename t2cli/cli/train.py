"""`t2 train`: train one SVF expert (or the LoRA baseline) and publish it as a new registry version.

Under `accelerate launch` (or `torchrun`) every process runs this command; they split each batch
between them and only the main one prints and publishes.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from copy import copy
from dataclasses import MISSING, asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from t2cli.cli.common import make_progress, print_json, settings, stdout_console
from t2cli.cli.options import (
    EngineOption,
    ModelOption,
    RegistryOption,
    TargetsOption,
    model_and_threads,
    placement,
)
from t2cli.training.config import Setting, TrainConfig, config_settings, load_config

if TYPE_CHECKING:
    from t2cli.experts.registry import Registry
    from t2cli.training.run_folder import StepEvent
    from t2cli.training.trainer import StepObserver


@contextmanager
def step_observers(ctx: typer.Context, name: str, steps: int, enabled: bool) -> Iterator[list[StepObserver]]:
    """What hears of each step: a progress bar and the run's curves (none where this process does not report)."""
    if not enabled:
        yield []
        return
    from t2cli.plots.training import write_run_curves

    with make_progress(ctx, transient=False) as progress:
        bar = progress.add_task(f"training {name}", total=steps)

        def advance(event: StepEvent) -> None:
            record = event.record
            val = f" val {record.val_score:.3f}" if record.val_score is not None else ""
            progress.update(
                bar,
                completed=record.step,
                description=f"training {name}: reward {record.reward:+.3f} kl {record.kl:.4f}{val}",
            )

        yield [advance, write_run_curves]


def train_command(
    ctx: typer.Context,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Expert name (default: the task).")] = None,
    model: ModelOption = None,
    experts: Annotated[
        str | None,
        typer.Option(
            "--experts",
            help=(
                "For --task cls: the experts whose tasks are the categories "
                "(a task with no expert, e.g. mbpp, is a category that keeps the base weights)."
            ),
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="YAML of training settings (the options below; a manifest's provenance.hyperparameters as is). "
            "Options given on the command line win.",
        ),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Checkpoints and log (default: $T2_HOME/runs/MODEL/NAME).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")] = False,
    shard: Annotated[
        bool,
        typer.Option(
            "--shard",
            help="Under accelerate launch/torchrun: split each decoder layer's weights and SVF factors across "
            "the processes (FSDP2) instead of a whole model in each; for models larger than one device.",
        ),
    ] = False,
    recompute: Annotated[
        bool,
        typer.Option(
            "--recompute",
            help="Keep only each decoder layer's input for the backward and run the layer again there "
            "(activation checkpointing): about a third more compute, a fraction of the memory.",
        ),
    ] = False,
    registry: RegistryOption = None,
    engine: EngineOption = "auto",
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    **settings_given: Any,
) -> None:
    """Train an SVF expert by REINFORCE with a KL penalty and publish it to the registry.

    --method lora trains the baseline instead: a PEFT LoRA adapter on the same matrices, saved in PEFT's format.

    Example: t2 train --task arc --steps 120 -o arc   (ARC-Easy from the Hub; --data FILE for your own)

    A bank expert again, from its recipe: t2 train --config recipes/train/arc.yaml -o arc

    A probe router (--adapt probe): t2 train --task cls --experts arc,math,mbpp --method probe --layer L

    On several processes: accelerate launch --multi_gpu --num_processes 4 -m t2cli train --task arc …
    """
    from t2cli.config import t2_home
    from t2cli.engines import check_engine
    from t2cli.experts.bundled import open_registry
    from t2cli.experts.manifest_fields import check_name
    from t2cli.tasks.math_mix import resolve_built
    from t2cli.training.data import classification_task, training_task
    from t2cli.training.distributed import launched_world
    from t2cli.training.publish import publish
    from t2cli.training.trainer import Trainer

    config = train_config(ctx, config_file, settings_given)
    data = config.data
    check_engine(engine)
    if output is not None:
        check_name(output)  # the run folder is named after it: no path may leave the runs root
    if config.method == "probe":
        train_probe_command(ctx, config, experts, output, model, open_registry(registry), json_output)
        return
    task = training_task(config.task, config.seed)
    store = open_registry(registry)
    with launched_world(placement(ctx).device) as world:
        loaded = model_and_threads(ctx, model, device=world.device)
        if task is None:
            task = classification_task(experts, resolve_built(data), config.seed, store, loaded.slug)
        source = None if config.task == "cls" else data  # cls reads its members' data
        local = resolve_built(source)  # t2:math-mix/FILE: built once under the t2 home
        train, validation = task.load(local, "train"), task.load(local, "validation")
        name = output or task.name
        folder = run_dir or t2_home() / "runs" / loaded.slug / name
        with step_observers(ctx, name, config.steps, enabled=world.main) as observers:
            trainer = Trainer(
                loaded,
                task,
                train,
                validation,
                config,
                run_dir=folder,
                observers=observers,
                world=world,
                engine=engine,
                shard=shard,
                recompute=recompute,
            )
            result = trainer.run(resume=resume)
    if not world.main:
        return
    # Provenance names the data as any machine can load it again: the Hub URL at the commit read.
    source = getattr(task, "origin", None) or source
    config = replace(config, data=recorded_data(config.data if config.task == "cls" else source))
    ref = publish(store, loaded, task, source, train, config, result, name)
    summary = {
        "expert": ref.spec,
        "model": loaded.model_id,
        "registry": str(store.root),
        "run_dir": str(folder),
        "method": config.method,
        "processes": world.size,
        "rollout": result.rollout,
        "engine": trainer.engine.name,
        "steps": len(result.steps),
        "best_step": result.best_step,
        "base_val_score": result.base_val,
        "val_score": result.best_val,
        "trainable_parameters": result.trainable_parameters,
        "peak_memory_mb": round(result.peak_memory_mb),
        "seconds": round(result.seconds, 1),
    }
    if json_output:
        print_json(summary | {"config": asdict(config)})
        return
    if settings(ctx).quiet:
        return
    table = Table(title=f"trained {ref.spec}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    stdout_console().print(table)


def train_probe_command(
    ctx: typer.Context,
    config: TrainConfig,
    experts: str | None,
    output: str | None,
    model: str | None,
    store: Registry,
    json_output: bool,
) -> None:
    """`--method probe`: fit a probe on the cls task's requests and publish it (t2cli.training.probe)."""
    from t2cli.engines.early_exit import check_layer
    from t2cli.tasks.math_mix import resolve_built
    from t2cli.training.data import classification_task
    from t2cli.training.probe import publish_probe, train_probe

    assert config.layer is not None and config.tokens is not None  # TrainConfig fills them for probes
    loaded = model_and_threads(ctx, model)
    check_layer(config.layer, loaded.model.config.get_text_config().num_hidden_layers)
    task = classification_task(experts, resolve_built(config.data), config.seed, store, loaded.slug)
    train, validation = task.load(None, "train"), task.load(None, "validation")
    run = train_probe(loaded, task, train, validation, config.layer, config.tokens, config.batch_size)
    config = replace(config, data=recorded_data(config.data))
    ref = publish_probe(store, loaded, task, train, config, run, output or "probe")
    summary = {
        "probe": ref.spec,
        "model": loaded.model_id,
        "registry": str(store.root),
        "layer": run.info.layer,
        "tokens": run.info.tokens,
        "threshold": run.info.threshold,
        "train_n": run.train_n,
        "train_score": run.train_accuracy,
        "val_n": run.validation_n,
        "val_score": run.fit.validation_accuracy,
        **{f"val_{name}": score for name, score in run.validation_by_category.items()},
        "seconds": round(run.seconds, 1),
    }
    if json_output:
        print_json(summary | {"config": asdict(config)})
    elif not settings(ctx).quiet:
        table = Table(title=f"trained {ref.spec}", show_header=False)
        for key, value in summary.items():
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        stdout_console().print(table)


def recorded_data(source: str | None) -> str | None:
    """The `data` a manifest's hyperparameters keep: a Hub URL (or a t2: builder) as is, a local file or
    folder by its name (never a path of the training machine); cls's TASK=SOURCE pairs each so."""
    if source is None or source.startswith(("hf://", "t2:")):
        return source
    if "=" in source:
        pairs = (item.partition("=") for item in source.split(","))
        return ",".join(f"{name}={recorded_data(path)}" for name, _, path in pairs)
    return Path(source).expanduser().resolve().name


# Options spelled otherwise than --FIELD-NAME, or declared once for several commands.
_SHORT = {"task": ("-t",)}
_SHARED = {"targets": TargetsOption}
_PANEL = "Training settings (also read from --config)"


def _setting_parameter(setting: Setting) -> inspect.Parameter:
    """The option of one TrainConfig field: its flag, type, default and help come from the dataclass."""
    if setting.name in _SHARED:
        kind, shared = typing.get_args(_SHARED[setting.name])
        option = copy(shared)  # the shared declaration stays as other commands use it
    else:
        kind = setting.kind | None if setting.optional else setting.kind
        option = typer.Option(f"--{setting.flag}", *_SHORT.get(setting.name, ()), help=setting.help)
    option.rich_help_panel = _PANEL
    # A required field (the task) may come from --config instead, so no option is required here.
    default = None if setting.default is MISSING else setting.default
    return inspect.Parameter(
        setting.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def train_config(ctx: typer.Context, config_file: Path | None, given: dict[str, Any]) -> TrainConfig:
    """TrainConfig from the options typed (or set in the environment), over --config, over the task's defaults."""
    # By name: typer vendors its own click, whose ParameterSource is another class than click's.
    explicit = {name: value for name, value in given.items() if _source(ctx, name) in ("COMMANDLINE", "ENVIRONMENT")}
    return load_config(config_file, explicit)


def _source(ctx: typer.Context, name: str) -> str | None:
    source = ctx.get_parameter_source(name)
    return None if source is None else source.name


_own = [p for p in inspect.signature(train_command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [*_own, *(_setting_parameter(setting) for setting in config_settings())]
)
