"""StrategyOptions: every setting of pass 1's strategies beyond their name, declared once.

The dataclass is the one source of truth: each field's metadata (flag, help, CLI type) generates the
options `t2 run` and `t2 dispatch` share (t2cli.cli.passes), and routers read the fields by name. A
field's help is prefixed with the routers that read it (their `options`), so a plug-in router that
reads `route_tokens` shows up in that option's help. Light on purpose: the CLI imports it to build its
options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError

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
        default=None, metadata=_option("the expert to use (default: the model's cls expert).")
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
