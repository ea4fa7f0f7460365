"""docs/cli.md, the Markdown reference of every `t2` command, rendered from the live command tree.

The tree is the one the shell completions are generated from (`t2cli.cli.app.live_tree`), so
the reference cannot drift from the parser; a test renders it in memory and compares it with the
committed copy. Regenerate the committed copy with:

    python -m t2cli.cli.reference docs/cli.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from t2cli.cli.app import live_tree
from t2cli.cli.command_tree import ArgumentSpec, CommandSpec, OptionSpec

REGENERATE = "python -m t2cli.cli.reference docs/cli.md"
HEADER = (
    f"_Generated from the live command tree by `t2cli/cli/reference.py`; do not edit. Regenerate with `{REGENERATE}`._"
)


def _text(text: str) -> str:
    """Help text as Markdown shows it: `<model>` would otherwise be taken for an HTML tag and vanish."""
    return text.replace("<", "&lt;")


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return _text(" ".join(text.split())).replace("|", "\\|")


def _summary(command: CommandSpec) -> str:
    """The help text's first paragraph, whole (the completions' short help is cut at 100 characters)."""
    return command.text.split("\n\n")[0]


def _argument_word(argument: ArgumentSpec) -> str:
    word = argument.value.label.upper()
    if argument.nargs < 0:
        word += "..."
    return word if argument.required else f"[{word}]"


def usage_line(command: CommandSpec) -> str:
    """`t2 run [OPTIONS] PROMPTS`: what `--help` prints, with arguments named as the reference names them."""
    words = [*command.path]
    if command.options:
        words.append("[OPTIONS]")
    words += [_argument_word(a) for a in command.arguments]
    if command.commands:
        words.append("COMMAND [ARGS]...")
    return " ".join(words)


def _value_label(option: OptionSpec) -> str:
    if option.value is None:
        return "flag"
    label = "\\|".join(option.value.choices) if option.value.choices else option.value.label.upper()
    label = " ".join([label] * option.nargs) if option.nargs > 1 else label
    return f"{label} (repeatable)" if option.multiple else label


def _option_row(option: OptionSpec) -> str:
    names = ", ".join(f"`{n}`" for n in option.names)
    default = f"`{option.default}`" if option.default is not None else ""
    help_text = option.help
    if option.envvar:
        help_text += f" Environment variable: `{option.envvar}`."
    if option.required:
        help_text = f"**Required.** {help_text}"
    return f"| {names} | {_value_label(option)} | {default} | {_cell(help_text)} |"


def _section(command: CommandSpec) -> list[str]:
    lines = [f"{'#' * (len(command.path) + 1)} `{command.key}`", "", "```", usage_line(command), "```", ""]
    if command.text:
        lines += [_text(command.text), ""]
    if command.arguments:
        lines += ["| argument | required | help |", "|---|---|---|"]
        for argument in command.arguments:
            required = "yes" if argument.required else "no"
            lines.append(f"| `{_argument_word(argument)}` | {required} | {_cell(argument.help)} |")
        lines.append("")
    if command.options:
        lines += ["| option | value | default | help |", "|---|---|---|---|"]
        lines += [_option_row(option) for option in command.options]
        lines.append("")
    if command.commands:
        lines += ["| command | what it does |", "|---|---|"]
        lines += [f"| [`{c.key}`](#{_anchor(c)}) | {_cell(_summary(c))} |" for c in command.commands]
        lines.append("")
    return lines


def _anchor(command: CommandSpec) -> str:
    """GitHub's anchor for a `## \\`t2 x y\\`` heading: lowercase, spaces to dashes, backticks dropped."""
    return command.key.lower().replace(" ", "-")


def render(tree: CommandSpec) -> str:
    """The whole reference: a header, a contents list, then one section per command in tree order."""
    commands = list(tree.walk())
    lines = [HEADER, "", f"# `{tree.key}` command reference", ""]
    lines += [f"{'  ' * (len(c.path) - 1)}- [`{c.key}`](#{_anchor(c)})" for c in commands]
    lines.append("")
    for command in commands:
        lines += _section(command)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from t2cli.fsutil import atomic_write

    parser = argparse.ArgumentParser(
        prog="python -m t2cli.cli.reference", description="Write the Markdown reference of every t2 command."
    )
    parser.add_argument("path", type=Path, help="The Markdown file to write (the repo's: docs/cli.md).")
    args = parser.parse_args(argv)
    args.path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.path, render(live_tree()).encode())
    args.path.chmod(0o644)  # atomic_write's temp file is private (0600)
    print(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
