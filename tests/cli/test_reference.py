"""docs/cli.md: the committed reference matches the live command tree, and the renderer shows what each option takes."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from t2cli.cli.app import live_tree
from t2cli.cli.command_tree import CommandSpec, command_tree
from t2cli.cli.reference import HEADER, REGENERATE, main, render, usage_line

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


class Color(str, enum.Enum):
    red = "red"
    green = "green"


def tiny_tree() -> CommandSpec:
    """A throwaway app with one option of each kind the reference renders."""
    app = typer.Typer(name="t2")

    @app.callback()
    def root(threads: Annotated[int | None, typer.Option("--threads", help="CPU threads.")] = None) -> None: ...

    @app.command("paint", help="Paint things.\n\nExample: t2 paint walls --color green")
    def paint(
        target: Annotated[str, typer.Argument(help="What to paint.")],
        extra: Annotated[list[Path] | None, typer.Argument(help="More files.")] = None,
        color: Annotated[Color, typer.Option("--color", "-c", help="Which colour (red|green).")] = Color.red,
        coats: Annotated[int, typer.Option("--coats", help="Layers of paint.", envvar="T2_COATS")] = 2,
        brush: Annotated[str, typer.Option("--brush", help="Brush <size>.")] = ...,
        dry: Annotated[bool, typer.Option("--dry/--wet", help="Let it dry.")] = True,
        secret: Annotated[bool, typer.Option("--secret", hidden=True)] = False,
    ) -> None: ...

    group = typer.Typer()

    @group.command("leaf", help="A leaf.")
    def leaf() -> None: ...

    app.add_typer(group, name="group", help="A group.")
    return command_tree(typer.main.get_command(app))


def test_committed_reference_is_up_to_date() -> None:
    assert COMMITTED.exists(), f"docs/cli.md is missing; run: {REGENERATE}"
    assert COMMITTED.read_text() == render(live_tree()), f"docs/cli.md is out of date; run: {REGENERATE}"


def test_reference_starts_with_how_to_regenerate_and_covers_every_live_command() -> None:
    text = render(live_tree())
    assert text.splitlines()[0] == HEADER and REGENERATE in HEADER
    for command in live_tree().walk():
        assert f"`{command.key}`](#{command.key.replace(' ', '-')})" in text
        assert f"\n{usage_line(command)}\n" in text
    assert "| `--adapt`, `-a` |" in text and "--strategy" not in text and "Environment variable: `T2_ENGINE`" in text


def test_tiny_tree_renders_usage_arguments_options_defaults_and_help() -> None:
    text = render(tiny_tree())
    assert "\nt2 paint [OPTIONS] TARGET [EXTRA...]\n" in text
    assert "\nt2 group [OPTIONS] COMMAND [ARGS]...\n" in text
    assert "Paint things.\n\nExample: t2 paint walls --color green\n" in text
    assert "| `TARGET` | yes | What to paint. |" in text
    assert "| `[EXTRA...]` | no | More files. |" in text
    assert "| `--color`, `-c` | red\\|green | `red` | Which colour (red\\|green). |" in text
    assert "| `--coats` | COATS | `2` | Layers of paint. Environment variable: `T2_COATS`. |" in text
    assert "| `--brush` | BRUSH |  | **Required.** Brush &lt;size>. |" in text
    assert "| `--dry`, `--wet` | flag | `--dry` | Let it dry. |" in text
    assert "--secret" not in text
    assert "| [`t2 group leaf`](#t2-group-leaf) | A leaf. |" in text
    assert "#### `t2 group leaf`" in text


def test_main_writes_the_reference(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "cli.md"
    assert main([str(out)]) == 0
    assert out.read_text() == render(live_tree())
    assert out.stat().st_mode & 0o777 == 0o644
