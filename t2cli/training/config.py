"""TrainConfig: every knob of a training run, validated, stored whole in the expert's provenance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from t2cli.errors import BadInputError
from t2cli.svf import check_rule

if TYPE_CHECKING:
    pass


METHODS = ("svf", "nll", "lora", "lora-nll")


ROLLOUTS = ("auto", "generate", "choices", "likelihood")


SELECTIONS = ("best", "last")


DEFAULT_RANK = 16  # LoRA rank of the baseline when --rank is not given
BASELINES = ("none", "mean", "group")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run; stored whole in the expert's provenance."""

    task: str
    method: str = "svf"
    rollout: str = "auto"
    targets: str | None = None
    rule: str = "none"
    steps: int = 100
    batch_size: int = 8
    samples: int = 4
    lr: float = 2e-3
    kl: float = 0.05
    temperature: float = 1.0
    baseline: str = "group"
    max_new_tokens: int = 128
    grad_clip: float = 1.0
    micro_batch: int = 8
    val_every: int = 20
    val_limit: int | None = 100
    train_limit: int | None = None
    checkpoint_every: int = 10
    seed: int = 0
    # LoRA rank r (lora methods only; DEFAULT_RANK when not given).
    rank: int | None = None
    # Which weights are published: `best` validation score (the base wins ties: a run that never
    # beats it publishes z = 1), or the `last` step's (for objectives validation cannot yet see).
    select: str = "best"

    @property
    def adapter(self) -> str:
        """What is trained: `svf` (z) or `lora` (a PEFT adapter)."""
        return "lora" if self.method.startswith("lora") else "svf"

    @property
    def objective(self) -> str:
        """`reinforce` (rollouts and rewards) or `nll` (the reference answers)."""
        return "nll" if self.method.endswith("nll") else "reinforce"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("method", self.method, METHODS),
            ("rollout", self.rollout, ROLLOUTS),
            ("baseline", self.baseline, BASELINES),
            ("select", self.select, SELECTIONS),
        ):
            if value not in allowed:
                raise BadInputError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")
        check_rule(self.rule)
        for name in ("steps", "batch_size", "samples", "max_new_tokens", "micro_batch", "val_every"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.kl < 0 or self.temperature <= 0:
            raise BadInputError("lr and temperature must be > 0 and kl >= 0; check --lr, --temperature, --kl")
        if self.adapter == "svf":
            if self.rank is not None:
                raise BadInputError("--rank is the LoRA rank; use it with --method lora or lora-nll")
            return
        if self.rule != "none":
            raise BadInputError(f"--rule {self.rule} applies to SVF's z; drop it with --method {self.method}")
        if self.rank is None:
            object.__setattr__(self, "rank", DEFAULT_RANK)  # frozen: fill the default once, here
        elif self.rank < 1:
            raise BadInputError(f"rank must be >= 1, got {self.rank}; pass --rank N")
