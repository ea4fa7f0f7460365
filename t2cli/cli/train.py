"""`t2 train`: train one SVF expert (or the LoRA baseline) and publish it as a new registry version.

Under `accelerate launch` (or `torchrun`) every process runs this command; they split each batch
between them and only the main one prints and publishes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from t2cli.cli.common import make_progress, print_json, settings, stdout_console
from t2cli.cli.options import EngineOption, ModelOption, RegistryOption, TargetsOption, model_and_threads, open_registry

if TYPE_CHECKING:
    from t2cli.training.records import StepRecord


@contextmanager
def progress_reporter(
    ctx: typer.Context, name: str, steps: int, enabled: bool
) -> Iterator[Callable[[StepRecord], None] | None]:
    """An on_step callback that drives a progress bar (None where this process does not report)."""
    if not enabled:
        yield None
        return
    with make_progress(ctx, transient=False) as progress:
        bar = progress.add_task(f"training {name}", total=steps)

        def on_step(record: StepRecord) -> None:
            val = f" val {record.val_score:.3f}" if record.val_score is not None else ""
            progress.update(
                bar,
                completed=record.step,
                description=f"training {name}: reward {record.reward:+.3f} kl {record.kl:.4f}{val}",
            )

        yield on_step


def train_command(
    ctx: typer.Context,
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (arc, gsm8k, mbpp, …, cls) or a YAML spec.")],
    data: Annotated[str | None, typer.Option("--data", help="Data file or folder (default: the task's own).")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Expert name (default: the task).")] = None,
    model: ModelOption = None,
    targets: TargetsOption = None,
    experts: Annotated[
        str | None, typer.Option("--experts", help="For --task cls: the experts whose tasks are the categories.")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="svf (REINFORCE, default), nll (reference answers), or the LoRA baseline: lora, lora-nll.",
        ),
    ] = "svf",
    rank: Annotated[
        int | None, typer.Option("--rank", help="LoRA rank r for --method lora/lora-nll (default 16).")
    ] = None,
    rollout: Annotated[
        str, typer.Option("--rollout", help="auto, generate, or choices (exact gradient over answer letters).")
    ] = "auto",
    rule: Annotated[str, typer.Option("--rule", help="SVF rule: none or nuclear (keep Σ s·z = Σ s).")] = "none",
    steps: Annotated[int, typer.Option("--steps", help="Optimiser steps.")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Prompts per step.")] = 8,
    samples: Annotated[int, typer.Option("--samples", help="Completions sampled per prompt (generate).")] = 4,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate on z (or the LoRA factors).")] = 2e-3,
    kl: Annotated[float, typer.Option("--kl", help="β of the KL(π_z ‖ π_base) penalty.")] = 0.05,
    temperature: Annotated[float, typer.Option("--temperature", help="Sampling temperature of rollouts.")] = 1.0,
    baseline: Annotated[str, typer.Option("--baseline", help="Reward baseline: none, mean or group.")] = "group",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Rollout and validation length.")] = 128,
    micro_batch: Annotated[int, typer.Option("--micro-batch", help="Sequences per backward pass.")] = 8,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N steps.")] = 20,
    select: Annotated[
        str,
        typer.Option("--select", help="Publish the best validated step (ties: the earlier, base first) or the last."),
    ] = "best",
    val_limit: Annotated[int | None, typer.Option("--val-limit", help="Validation examples (default 100).")] = 100,
    train_limit: Annotated[int | None, typer.Option("--train-limit", help="Use only the first N examples.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for batches, sampling and choice order.")] = 0,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Checkpoints and log (default: $T2_HOME/runs/MODEL/NAME).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")] = False,
    registry: RegistryOption = None,
    engine: EngineOption = "auto",
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Train an SVF expert by REINFORCE with a KL penalty and publish it to the registry.

    --method lora trains the baseline instead: a PEFT LoRA adapter on the same matrices, saved in PEFT's format.

    Example: t2 train --task arc --data ../shared/data/arc_easy --steps 120 -o arc

    On several processes: accelerate launch --multi_gpu --num_processes 4 -m t2cli train --task arc …
    """
    from t2cli.config import t2_home
    from t2cli.engines import check_engine
    from t2cli.training.config import TrainConfig
    from t2cli.training.data import training_data
    from t2cli.training.distributed import launched_world
    from t2cli.training.publish import publish
    from t2cli.training.trainer import Trainer

    config = TrainConfig(
        task=task,
        method=method,
        rollout=rollout,
        targets=targets,
        rule=rule,
        steps=steps,
        batch_size=batch_size,
        samples=samples,
        lr=lr,
        kl=kl,
        temperature=temperature,
        baseline=baseline,
        max_new_tokens=max_new_tokens,
        micro_batch=micro_batch,
        val_every=val_every,
        val_limit=val_limit,
        train_limit=train_limit,
        seed=seed,
        rank=rank,
        select=select,
    )
    check_engine(engine)
    store = open_registry(registry)
    with launched_world() as world:
        loaded = model_and_threads(ctx, model)
        task_obj, train, validation = training_data(task, data, seed, store, loaded.slug, experts)
        name = output or task_obj.name
        folder = run_dir or t2_home() / "runs" / loaded.slug / name
        with progress_reporter(ctx, name, config.steps, enabled=world.main) as on_step:
            trainer = Trainer(
                loaded,
                task_obj,
                train,
                validation,
                config,
                run_dir=folder,
                on_step=on_step,
                world=world,
                engine=engine,
            )
            result = trainer.run(resume=resume)
    if not world.main:
        return
    ref = publish(store, loaded, task_obj, data, train, config, result, name)
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
