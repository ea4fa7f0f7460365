"""The root `t2` command: global options, error handling, and the sub-commands."""

from __future__ import annotations

import typing
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from t2cli import __version__
from t2cli.cli import (
    compose,
    decompose,
    dispatch,
    doctor,
    evaluate,
    export,
    plot_run,
    registry,
    run,
    serve,
    train,
    transfer,
)
from t2cli.cli.command_tree import CommandSpec, command_tree
from t2cli.cli.common import CliSettings, stderr_console
from t2cli.errors import T2Error
from t2cli.fsutil import write_error

try:  # typer >= 0.26 parses with its own copy of click, whose exception classes are not click's
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:
    from click.exceptions import NoArgsIsHelpError, UsageError


class T2Group(TyperGroup):
    """Turns a T2Error or a usage error from any command into one line on stderr and the error's exit code."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as error:  # the root's own options (`t2 --threads abc ...`)
            _usage_exit(error)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except T2Error as error:
            if isinstance(ctx.obj, CliSettings) and ctx.obj.debug:
                raise
            _error_exit(error)
        except UsageError as error:  # a sub-command's arguments
            _usage_exit(error)
        except OSError as error:  # a full disk, a read-only T2_HOME...: the machine's failure, not t2's
            machine = write_error(error)
            if machine is None or (isinstance(ctx.obj, CliSettings) and ctx.obj.debug):
                raise
            _error_exit(machine)


def _error_exit(error: T2Error) -> typing.NoReturn:
    stderr_console().print(f"error: {error}", markup=False, soft_wrap=True)
    raise typer.Exit(error.exit_code) from None


def _usage_exit(error: UsageError) -> typing.NoReturn:
    """One `error:` line naming the command's --help instead of click's usage block (exit 2)."""
    if isinstance(error, NoArgsIsHelpError):
        raise error  # `t2 registry` alone: click prints the help, as intended
    where = error.ctx.command_path if error.ctx is not None else "t2"
    message = " ".join(error.format_message().split()).rstrip(".")
    stderr_console().print(f"error: {message}; see `{where} --help`", markup=False, soft_wrap=True)
    raise typer.Exit(error.exit_code)


app = typer.Typer(
    cls=T2Group,
    name="t2",
    help="Transformer²: train, compose, transfer, publish and serve SVF expert banks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"t2 {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, help="Torch CPU threads (default: $T2_THREADS, else torch's)."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="Where models run: auto (a CUDA GPU if any, else cpu), cpu, cuda, cuda:N, mps (or $T2_DEVICE).",
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="Compute dtype: auto (bfloat16 on CUDA, else float32), float32, bfloat16, float16 (or $T2_DTYPE).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    from t2cli.device import check_device, check_dtype

    ctx.obj = CliSettings(threads=threads, debug=debug, quiet=quiet)  # --debug applies to the checks below
    # Spelling only (no torch import): a bad flag stops here, before any command loads a model;
    # $T2_DEVICE / $T2_DTYPE are checked where they are resolved, so `t2 doctor` can report them.
    ctx.obj = CliSettings(
        threads=threads,
        debug=debug,
        quiet=quiet,
        device=check_device(device) if device else None,
        dtype=check_dtype(dtype) if dtype else None,
    )


app.command("decompose")(decompose.decompose_command)
app.add_typer(registry.app, name="registry")
app.command("compose")(compose.compose_command)
app.command("transfer")(transfer.transfer_command)
app.command("train")(train.train_command)
app.command("plot-run")(plot_run.plot_run_command)
app.command("eval")(evaluate.eval_command)
app.command("export")(export.export_command)
app.command("dispatch")(dispatch.dispatch_command)
app.command("run")(run.run_command)
app.command("serve")(serve.serve_command)
app.command("doctor")(doctor.doctor_command)


def main() -> None:
    app()


def live_tree() -> CommandSpec:
    """The tree of this `t2` app as plain records: what completions/ and docs/cli.md are rendered from."""
    return command_tree(typer.main.get_command(app))
