"""TrainConfig: every knob of a training run, validated, stored whole in the expert's provenance.

The dataclass is the one source of truth for a run's settings: each field's `help` metadata is what
`t2 train` shows for the option it generates from the field, and `load_config` reads the same
fields from a YAML file (what a manifest stores under provenance.hyperparameters feeds back as is).
"""

from __future__ import annotations

import contextlib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError

METHODS = ("svf", "nll", "lora", "lora-nll", "probe")
ROLLOUTS = ("auto", "generate", "choices", "likelihood")
SELECTIONS = ("best", "last")
BASELINES = ("none", "mean", "group")
DEFAULT_RANK = 16  # LoRA rank of the baseline when --rank is not given
# Request tokens a probe reads when --tokens is not given: the route tokens of the `classifier` strategy.
DEFAULT_PROBE_TOKENS = 64


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run; stored whole in the expert's provenance."""

    task: str = field(metadata=_help("Task name (arc, gsm8k, mbpp, …, cls) or a YAML spec."))
    method: str = field(
        default="svf",
        metadata=_help(
            "svf (REINFORCE, default), nll (reference answers), the LoRA baseline: lora, lora-nll; or for --task cls "
            "probe: a router's head over the base model's hidden states at --layer (no expert)."
        ),
    )
    rollout: str = field(
        default="auto",
        metadata=_help(
            "auto, generate, choices (exact gradient over answer letters) or likelihood (over choice texts)."
        ),
    )
    targets: str | None = field(
        default=None, metadata=_help("Matrices to adapt: all (default), mlp, attn, or roles like q,v,down.")
    )
    rule: str = field(default="none", metadata=_help("SVF rule: none or nuclear (keep Σ s·z = Σ s)."))
    steps: int = field(default=100, metadata=_help("Optimiser steps."))
    batch_size: int = field(default=8, metadata=_help("Prompts per step."))
    samples: int = field(default=4, metadata=_help("Completions sampled per prompt (generate)."))
    lr: float = field(default=2e-3, metadata=_help("Adam learning rate on z (or the LoRA factors)."))
    kl: float = field(default=0.05, metadata=_help("β of the KL(π_z ‖ π_base) penalty."))
    temperature: float = field(default=1.0, metadata=_help("Sampling temperature of rollouts."))
    baseline: str = field(default="group", metadata=_help("Reward baseline: none, mean or group."))
    max_new_tokens: int = field(default=128, metadata=_help("Rollout and validation length."))
    grad_clip: float = field(default=1.0, metadata=_help("Clip the gradient's global norm to this before each step."))
    micro_batch: int = field(default=8, metadata=_help("Sequences per backward pass."))
    val_every: int = field(default=20, metadata=_help("Validate every N steps (and at the last)."))
    val_limit: int | None = field(default=100, metadata=_help("Validate on the first N validation examples."))
    train_limit: int | None = field(default=None, metadata=_help("Train on the first N examples only."))
    checkpoint_every: int = field(default=10, metadata=_help("Checkpoint every N steps (and at the last)."))
    seed: int = field(default=0, metadata=_help("Seed for batches, sampling and choice order."))
    # One meaning for both adapters: the rank of the weight change. SVF's ΔW = U diag(s(z − 1)) Vh has the
    # rank of z − 1's support, so adapting the top r singular values makes `t2 export --rank r` exact.
    rank: int | None = field(
        default=None,
        metadata=_help(
            f"Rank of ΔW: the LoRA rank for lora/lora-nll (default {DEFAULT_RANK}); for svf/nll, adapt only each "
            "matrix's r largest singular values, so `t2 export --rank r` is exact (default: all)."
        ),
    )
    # `best` validation score (the base wins ties: a run that never beats it publishes z = 1), or the
    # `last` step's (for objectives validation cannot yet see).
    select: str = field(
        default="best",
        metadata=_help("Publish the best validated step (ties: the earlier, base first) or the last."),
    )
    # Where the examples come from; a recipe (recipes/train/*.yaml) names it with the rest of the run.
    data: str | None = field(
        default=None,
        metadata=_help(
            # No square brackets: the CLI's help renders rich markup, where [/CONFIG] is a closing tag.
            "Data file or folder, or a Hub dataset hf://datasets/OWNER/NAME, optionally @REV and /CONFIG "
            "(default: the task's own, from the Hub); for --task cls: TASK=PATH,…"
        ),
    )

    layer: int | None = field(
        default=None,
        metadata=_help("For --method probe: the decoder layer whose hidden states it reads (pass 1 runs only those)."),
    )
    tokens: int | None = field(
        default=None,
        metadata=_help(f"For --method probe: the request tokens it reads (default {DEFAULT_PROBE_TOKENS})."),
    )

    @property
    def adapter(self) -> str:
        """What is trained: `svf` (z) or `lora` (a PEFT adapter)."""
        return "lora" if self.method.startswith("lora") else "svf"

    @property
    def objective(self) -> str:
        """`reinforce` (rollouts and rewards) or `nll` (the reference answers)."""
        return "nll" if self.method.endswith("nll") else "reinforce"

    def __post_init__(self) -> None:
        for setting in config_settings():
            value = getattr(self, setting.name)
            if setting.kind is float and type(value) is int:
                object.__setattr__(self, setting.name, float(value))  # frozen: normalise once, here
            elif not (value is None and setting.optional) and type(value) is not setting.kind:
                raise BadInputError(f"{setting.name} must be {setting.describe()}, got {value!r}; {setting.fix}")
            elif setting.kind is float and not math.isfinite(value):
                raise BadInputError(f"{setting.name} must be a finite number, got {value}; {setting.fix}")
        for name, value, allowed in (
            ("method", self.method, METHODS),
            ("rollout", self.rollout, ROLLOUTS),
            ("baseline", self.baseline, BASELINES),
            ("select", self.select, SELECTIONS),
        ):
            if value not in allowed:
                raise BadInputError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        from t2cli.svf import check_rule  # torch: not at import, so the CLI starts fast

        check_rule(self.rule)
        counts = ("steps", "batch_size", "samples", "max_new_tokens", "micro_batch", "val_every", "checkpoint_every")
        for name in (*counts, "val_limit", "train_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BadInputError(f"{name.replace('_', '-')} must be >= 1, got {value}")
        if self.lr <= 0 or self.kl < 0 or self.temperature <= 0 or self.grad_clip <= 0:
            raise BadInputError(
                "lr, temperature and grad-clip must be > 0 and kl >= 0; check --lr, --temperature, --grad-clip, --kl"
            )
        if self.rank is not None and self.rank < 1:
            raise BadInputError(f"rank must be >= 1, got {self.rank}; pass --rank N")
        self._check_probe()
        if self.adapter == "svf":
            if self.rank is not None and self.rule != "none":
                raise BadInputError(
                    "--rank with --rule nuclear: that rule rescales every singular value, so ΔW has full rank; "
                    "use --rule none"
                )
            return
        if self.rule != "none":
            raise BadInputError(f"--rule {self.rule} applies to SVF's z; drop it with --method {self.method}")
        if self.rank is None:
            object.__setattr__(self, "rank", DEFAULT_RANK)  # frozen: fill the default once, here

    def _check_probe(self) -> None:
        """--layer and --tokens go with --method probe (on --task cls), which needs a layer."""
        if self.method != "probe":
            if self.layer is not None or self.tokens is not None:
                raise BadInputError("--layer and --tokens are settings of --method probe; drop them or add it")
            return
        if self.task != "cls":
            raise BadInputError(f"--method probe trains a router, on --task cls, not {self.task!r}; pass --task cls")
        if self.layer is None or self.layer < 1:
            raise BadInputError("--method probe reads one decoder layer's hidden states; pass --layer L (L >= 1)")
        if self.tokens is None:
            object.__setattr__(self, "tokens", DEFAULT_PROBE_TOKENS)  # frozen: fill the default once, here
        elif self.tokens < 1:
            raise BadInputError(f"--tokens must be >= 1, got {self.tokens}")


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field as an option: its scalar type, whether None is allowed, default and help."""

    name: str
    kind: type  # int, float or str
    optional: bool
    default: Any  # dataclasses.MISSING when required
    help: str

    @property
    def flag(self) -> str:
        return self.name.replace("_", "-")

    @property
    def fix(self) -> str:
        return f"fix --{self.flag} (or `{self.name}:` in --config)"

    def describe(self) -> str:
        kind = {int: "an integer", float: "a number", str: "a string"}[self.kind]
        return f"{kind} or null" if self.optional else kind


def config_settings() -> tuple[Setting, ...]:
    """TrainConfig's fields, in order, with their types resolved (the module's annotations are strings)."""
    hints = typing.get_type_hints(TrainConfig)
    result = []
    for item in fields(TrainConfig):
        hint = hints[item.name]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = [member for member in members if member is not type(None)]
        result.append(Setting(item.name, kinds[0], len(kinds) < len(members), item.default, item.metadata["help"]))
    return tuple(result)


def read_config(path: str | Path) -> dict[str, Any]:
    """The TrainConfig fields a YAML --config file sets. Every refusal is one line naming the file and the
    field, raised before anything loads."""
    from t2cli.settings_file import read_settings

    by_name = {setting.name: setting for setting in config_settings()}
    raw = read_settings(path, by_name, "training")
    values = dict(raw)
    for name, value in raw.items():
        if by_name[name].kind is float and isinstance(value, str):
            # YAML 1.1 reads an exponent without a dot (`lr: 2e-3`) as a string.
            with contextlib.suppress(ValueError):  # if not a number, TrainConfig names the field and type
                values[name] = float(value)
    return values


def task_training_defaults(task: str) -> Mapping[str, Any]:
    """The built-in task's own starting settings (empty for user specs and unknown names)."""
    from t2cli.errors import T2Error
    from t2cli.tasks.registry import get_task

    try:
        return get_task(task.split(":", 1)[0]).training_defaults
    except T2Error:
        return {}


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A run's settings, by precedence: `overrides` (the flags given) > the --config file at `path` > the
    task's training defaults > TrainConfig's own defaults."""
    values = read_config(path) if path is not None else {}
    values |= dict(overrides or {})
    if "task" not in values:
        where = f"{path} names no task; add `task: NAME` to it or pass --task" if path else "no task given"
        raise BadInputError(f"{where}; pass --task NAME (or a --config file with `task: NAME`)")
    return TrainConfig(**{**task_training_defaults(str(values["task"])), **values})
