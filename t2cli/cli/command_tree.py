"""The live command tree of `t2` as plain records (commands, options, arguments, what values they take):
what the shell completions and the generated docs/cli.md are both rendered from.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

PROG = "t2"


ValueKind = Literal["text", "choice", "file", "dir"]


# Names and choices are pasted into shell code unquoted (case patterns, compgen -W, zsh specs), so
# anything outside this set is refused at generation time rather than escaped three ways.
_SAFE_WORD = re.compile(r"[A-Za-z0-9_@+=,./-]+")


@dataclass(frozen=True)
class ValueSpec:
    """What an option value or a positional argument accepts."""

    label: str
    kind: ValueKind
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class OptionSpec:
    names: tuple[str, ...]  # every spelling: --quiet, -q, and --no-x for a --x/--no-x flag
    help: str
    nargs: int  # values it consumes: 0 for a flag
    value: ValueSpec | None
    multiple: bool
    # Read by the Markdown reference (t2cli/cli/reference.py), not by the shell scripts:
    default: str | None = None
    required: bool = False
    envvar: str | None = None


@dataclass(frozen=True)
class ArgumentSpec:
    value: ValueSpec
    nargs: int  # -1: every remaining word
    help: str = ""
    required: bool = False


@dataclass(frozen=True)
class CommandSpec:
    path: tuple[str, ...]  # ("t2", "registry", "list")
    help: str
    options: tuple[OptionSpec, ...]
    arguments: tuple[ArgumentSpec, ...]
    commands: tuple[CommandSpec, ...]
    text: str = ""  # the whole help text, for the Markdown reference

    @property
    def key(self) -> str:
        return " ".join(self.path)

    def walk(self) -> Iterator[CommandSpec]:
        yield self
        for command in self.commands:
            yield from command.walk()


def _safe(word: str, where: str) -> str:
    if _SAFE_WORD.fullmatch(word) is None:
        raise ValueError(f"{where}: {word!r} cannot go into a completion script (spaces or shell characters)")
    return word


def _one_line(text: str | None) -> str:
    """The first paragraph of a help text on one line."""
    return " ".join((text or "").split("\n\n")[0].split())


def _value(param: Any, label: str, where: str) -> ValueSpec:
    # This Typer (0.29, with its own vendored Click) types a parameter by a type_descriptor built from its
    # annotation, not by a click.ParamType: Enum / Literal give the choices, Path / typer.FileText a file.
    desc = param.type_descriptor
    if desc.choices is not None:
        choices = tuple(_safe(str(getattr(c, "value", c)), where) for c in desc.choices)
        return ValueSpec(label, "choice", choices)
    annotation = get_args(desc.annotation)[0] if desc.is_list else desc.annotation  # is_path misses list[Path]
    if desc.is_file or desc.is_path or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return ValueSpec(label, "dir" if desc.path_type == "dir" else "file")
    return ValueSpec(label, "text")


def _default(param: Any) -> str | None:
    """The default as a user would type it; None where there is nothing to show (off flags, unset values)."""
    value = param.default
    if value is None or value is False or value == () or callable(value):
        return None
    if value is True:
        return param.opts[0]  # a --x/--no-x flag that is on unless turned off
    return str(getattr(value, "value", value))


def command_tree(command: Any, path: tuple[str, ...] = (PROG,), parent: Any = None) -> CommandSpec:
    """The completion-relevant shape of a Typer command (`typer.main.get_command(app)`), hidden parts left out."""
    from typer.core import TyperArgument, TyperGroup, TyperOption

    where = " ".join(path)
    ctx = command.context_class(command, parent=parent, info_name=path[-1], **command.context_settings)
    options: list[OptionSpec] = []
    arguments: list[ArgumentSpec] = []
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and not param.hidden:
            names = tuple(_safe(n, where) for n in (*param.opts, *param.secondary_opts))
            flag = param.is_flag or param.count
            label = _safe(next((n for n in names if n.startswith("--")), names[0]).lstrip("-"), where)
            options.append(
                OptionSpec(
                    names=names,
                    help=_one_line(param.help),
                    nargs=0 if flag else param.nargs,
                    value=None if flag else _value(param, label, where),
                    multiple=param.multiple or bool(param.count),
                    default=_default(param),
                    required=param.required,
                    envvar=param.envvar if isinstance(param.envvar, str) else None,
                )
            )
        elif isinstance(param, TyperArgument):
            value = _value(param, _safe(param.name, where), where)
            arguments.append(ArgumentSpec(value, param.nargs, _one_line(param.help), param.required))
    commands = []
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                commands.append(command_tree(sub, (*path, _safe(name, where)), ctx))
    return CommandSpec(
        path=path,
        help=command.get_short_help_str(limit=100),
        options=tuple(options),
        arguments=tuple(arguments),
        commands=tuple(commands),
        text=inspect.cleandoc(command.help or ""),
    )
