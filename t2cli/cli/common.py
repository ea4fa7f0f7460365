"""What every command shares: settings from the global options, consoles, JSON output, progress."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@dataclass(frozen=True)
class CliSettings:
    """Global options given before the command name (`t2 --threads 2 decompose`)."""

    threads: int | None = None
    debug: bool = False
    quiet: bool = False
    device: str | None = None  # --device, checked; None: $T2_DEVICE, else auto (resolved when a model loads)
    dtype: str | None = None


def settings(ctx: typer.Context) -> CliSettings:
    """The global settings, walking up to the root context (sub-groups have their own)."""
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, CliSettings) else CliSettings()


def given_on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether a parameter was typed (or set through its environment variable), not left at its default."""
    source = ctx.get_parameter_source(name)
    # By name: typer vendors its own click, whose ParameterSource is another class than click's.
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def stdout_console() -> Console:
    # Rich drops colour and live rendering by itself when stdout is not a terminal.
    return Console(highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(payload: Any) -> None:
    """Machine-readable output for scripts: one JSON document on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def make_progress(ctx: typer.Context, *, transient: bool = True) -> Progress:
    """A progress bar on stderr, silent when --quiet is set or stderr is not a terminal."""
    console = stderr_console()
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=settings(ctx).quiet or not console.is_terminal,
    )


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
