"""The root `t2` command: global options, error handling, and the sub-commands."""

from __future__ import annotations

from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from t2cli import __version__
from t2cli.cli import compose, decompose, dispatch, doctor, evaluate, export, plot_run, registry, run, train, transfer
from t2cli.cli.common import CliSettings, stderr_console
from t2cli.errors import T2Error


class T2Group(TyperGroup):
    """Turns a T2Error from any command into one line on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except T2Error as error:
            if isinstance(ctx.obj, CliSettings) and ctx.obj.debug:
                raise
            stderr_console().print(f"error: {error}", markup=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None


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
        int | None, typer.Option("--threads", help="Torch CPU threads (default: $T2_THREADS, else torch's).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = CliSettings(threads=threads, debug=debug, quiet=quiet)


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
app.command("doctor")(doctor.doctor_command)


def main() -> None:
    app()
