"""StrategyOptions: every setting of pass 1's strategies beyond their name, declared once.

The dataclass is the one source of truth: each field's metadata (flag, help, CLI type) generates the
options `t2 run`, `t2 dispatch` and `t2 serve` share (t2cli.cli.passes), a YAML file (their `--config`)
may set any field by name, and routers read the fields by name. A
field's help is prefixed with the routers that read it (their `options`), so a plug-in router that
reads `route_tokens` shows up in that option's help. Light on purpose: the CLI imports it to build its
options.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError
from t2cli.settings_file import read_settings

# Pass 1's strategy when --adapt is not given, for every command that routes: `probe` routed 146 of 150
# held-out bare requests where `classifier` (cls@3) routed 144 of the same, in 0.05x its pass-1 time, and
# `prompt` sent 0 of 200 science questions to arc (docs/benchmarks.md).
DEFAULT_ADAPT = "probe"

# The request tokens pass 1 reads by default: the fewest that routed held-out bare requests as well as the
# whole request with both strategies (32 was enough for the classifier, not for `prompt`; docs/benchmarks.md).
ROUTE_TOKENS: int | None = 64


def check_route_tokens(route_tokens: int | None) -> int | None:
    """The request tokens pass 1 reads: None (or 0) for the whole request, else N >= 1."""
    if route_tokens is not None and route_tokens < 0:
        raise BadInputError(f"--route-tokens {route_tokens}: pass N >= 1 tokens, or 0 to read the whole request")
    return route_tokens or None


def _option(help: str, *flags: str, cli_type: Any = None, **extra: Any) -> dict[str, Any]:
    """A field's option: its help, its flags (default --FIELD-NAME) and the type the CLI parses, if another."""
    return {"help": help, "flags": flags, "cli_type": cli_type, **extra}


@dataclass(frozen=True)
class StrategyOptions:
    """Options of the strategies beyond their name (the flags of `t2 run` and `t2 dispatch`)."""

    experts: tuple[str, ...] = field(
        default=(),
        metadata=_option(
            "The bank: comma list of experts (default: every trained expert of the model).", cli_type=str | None
        ),
    )
    classifier: str | None = field(
        default=None, metadata=_option("the classifier expert or probe to use (default: the model's only one).")
    )
    calibrate: bool = field(
        default=True,
        metadata=_option("remove the labels' prior (a content-free request).", "--calibrate/--no-calibrate"),
    )
    route_tokens: int | None = field(
        default=ROUTE_TOKENS,
        metadata=_option(
            f"pass 1 reads only the first N tokens of each request (0: all of it). Default: {ROUTE_TOKENS} "
            "(docs/benchmarks.md).",
            metavar="N",
            show_default=False,
        ),
    )
    task: str | None = field(
        default=None,
        metadata=_option("the task of the --shots (gsm8k, arc, mbpp...); without both, the batch's labelled lines."),
    )
    shots: Path | None = field(
        default=None, metadata=_option("JSONL file of 3-20 labelled examples in the task's own format.")
    )
    cem_granularity: str = field(
        default="expert", metadata=_option("one α per expert, or per expert and layer (expert|layer).")
    )
    cem_score: str | None = field(
        default=None,
        metadata=_option(
            "reward (greedy answers; likelihood breaks ties) or likelihood (no generation). "
            "Default: reward with --shots, likelihood for shots from the batch."
        ),
    )
    cem_population: int | None = field(
        default=None, metadata=_option("candidates per CEM iteration (default: 8; 4 from the batch).")
    )
    cem_elites: int | None = field(
        default=None, metadata=_option("best candidates the Gaussian is refit to (default: 3; 2 from the batch).")
    )
    cem_iterations: int | None = field(default=None, metadata=_option("CEM iterations (default: 5; 2 from the batch)."))
    cem_seed: int = field(default=0, metadata=_option("seed of the CEM samples."))
    cem_max_new_tokens: int = field(default=128, metadata=_option("answer length when scoring candidates by reward."))
    save_as: str | None = field(
        default=None,
        metadata=_option("registry name of the found mix (default: TASK-fewshot; NAME-TASK from the batch)."),
    )
    force: bool = field(
        default=False, metadata=_option("search again even if a saved search matches the shots and bank.", "--force")
    )

    def __post_init__(self) -> None:
        if self.experts is None or isinstance(self.experts, str):  # the CLI's comma list
            names = (name.strip() for name in (self.experts or "").split(","))
            object.__setattr__(self, "experts", tuple(name for name in names if name))

    def check(self, adapt: str) -> None:
        """Refuse a strategy whose options are missing or wrong, before any model is loaded."""
        from t2cli.adapt.strategies import ROUTERS

        check_route_tokens(self.route_tokens)
        if adapt in ROUTERS:
            ROUTERS.get(adapt).check(self)

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> StrategyOptions:
        """The options by precedence: `overrides` (the flags given) > the YAML file at `path` > the defaults."""
        return cls(**{**(_read_file(path) if path is not None else {}), **(overrides or {})})

    def few_shot_inputs(self) -> tuple[str, Path] | None:
        """--task and --shots, or None when both are left out: the shots come from the batch."""
        if self.task is None and self.shots is None:
            return None
        if self.task is None or self.shots is None:
            raise BadInputError(
                "few-shot takes --task T and --shots FILE together (3 to 20 labelled examples of T); "
                "leave both out to take the shots from the batch's labelled lines"
            )
        return self.task, self.shots


_KINDS = {bool: "true or false", int: "an integer", str: "a string", Path: "a path", tuple: "a list of names"}


def _read_file(path: str | Path) -> dict[str, Any]:
    """The fields a YAML file of strategy settings sets, each checked against the field's type."""
    hints = typing.get_type_hints(StrategyOptions)
    raw = read_settings(path, [item.name for item in fields(StrategyOptions)], "strategy")
    return {name: _file_value(path, name, value, hints[name]) for name, value in raw.items()}


def _file_value(path: str | Path, name: str, value: Any, hint: Any) -> Any:
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = [typing.get_origin(member) or member for member in members if member is not type(None)]
    if value is None and len(kinds) < len(members):
        return None
    for kind in kinds:
        if kind is tuple and isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        if (kind in (tuple, str, Path) and isinstance(value, str)) or (
            kind in (bool, int) and type(value) is kind
        ):  # tuple: a comma list, as on the command line; bool is no int here
            return Path(value).expanduser() if kind is Path else value
    expected = " or ".join([_KINDS[kind] for kind in kinds] + (["null"] if len(kinds) < len(members) else []))
    raise BadInputError(f"{path}: {name} must be {expected}, got {value!r}; fix `{name}:` in the file")
