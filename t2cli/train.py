"""Training SVF experts: REINFORCE with a KL penalty to the base model, gradients to z only.

For a batch of prompts x and completions y sampled under the current z (no grad), with task
rewards r and advantages A = r − baseline:

    loss(z) = −mean(A · log π_z(y | x)) + β · KL(π_z ‖ π_base)

where log π_z(y|x) sums over y's tokens and the KL is taken over the vocabulary at every sampled
position. Gradients flow through the materialised W'(z) = W + U diag(s(z − 1)) Vh into z alone.

Two rollout modes:
- `generate`: free generation and the task's reward (any task);
- `choices`: for multiple-choice tasks, the policy is the model's next-token distribution over the
  choice letters. With a handful of answers the expected reward Σ_c π(c) r(c) is computed exactly
  — the REINFORCE gradient with every action enumerated, so no sampling noise.

`nll` trains the same z on the reference answers' next-token loss (the paper's ablation).

`lora` and `lora-nll` train a PEFT LoRA adapter on the same matrices with the same objectives, the
baseline SVF is compared with (`t2cli.lora`). The trainer sees either through one policy interface
(`Policy`). Under `accelerate launch` the batch is split across processes (`t2cli.distributed`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from t2cli.distributed import World
from t2cli.engines import make_engine
from t2cli.engines.base import Engine, Prompt, Sampling, encode_prompt, label_token_ids, left_pad, pad_token_id
from t2cli.errors import BadInputError
from t2cli.evaluate import choice_continuation, evaluate, prompt_for
from t2cli.lora import DEFAULT_RANK
from t2cli.models import LoadedModel, TargetMatrix
from t2cli.svd import Factors, decompose
from t2cli.svf import adapted_weights, check_rule, functional_forward
from t2cli.tasks.base import Example, Task

if TYPE_CHECKING:
    from t2cli.store import ExpertRef, Registry

METHODS = ("svf", "nll", "lora", "lora-nll")
ROLLOUTS = ("auto", "generate", "choices", "likelihood")
SELECTIONS = ("best", "last")
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


@dataclass
class StepRecord:
    """One line of the JSONL training log."""

    step: int
    reward: float
    kl: float
    grad_norm: float
    tokens: int
    sample_s: float
    score_s: float
    grad_s: float
    val_score: float | None = None


@dataclass
class StepStats:
    reward: float
    kl: float
    tokens: int
    sample_s: float = 0.0
    score_s: float = 0.0
    grad_s: float = 0.0


@dataclass
class RunState:
    """What a checkpoint must restore besides the trained tensors and Adam's moments."""

    step: int
    base_val: float
    best_val: float
    best_step: int
    best: dict[str, torch.Tensor]  # the policy's snapshot at the best validation score


@dataclass
class TrainResult:
    z: dict[str, torch.Tensor]  # what the expert stores (the identity for LoRA)
    best_step: int
    best_val: float
    base_val: float
    steps: list[StepRecord]
    rollout: str
    trainable_parameters: int
    peak_memory_mb: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    # Files published beside z (registry name -> path): LoRA's PEFT adapter; none for SVF.
    files: dict[str, Path] = field(default_factory=dict)


class Policy(Protocol):
    """What the trainer needs from a parametrisation: SVF's z (`SVFPolicy`) or a LoRA adapter (`LoRAPolicy`)."""

    loaded: LoadedModel  # the model the engine runs

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        """The tensors Adam trains, by name (checkpoints key on these names)."""
        ...

    @property
    def parameters(self) -> list[torch.Tensor]: ...

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A detached copy of the trained state: what the best checkpoint keeps."""
        ...

    def step(self) -> AbstractContextManager[None]:
        """Bracket the forward and backward passes of one optimiser step."""
        ...

    def serving(self, engine: Engine, adapted: bool = True) -> AbstractContextManager[None]:
        """The engine generates as the current policy (or as the base model) inside."""
        ...

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor: ...

    def base_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int
    ) -> torch.Tensor: ...

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The z vectors the published expert stores for a snapshot."""
        ...

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        """Write what the expert needs besides z into `folder`; return registry name -> path."""
        ...


class SVFPolicy:
    """z = 1 + δ for each target; δ is what Adam trains, z is what the artifact stores."""

    def __init__(self, loaded: LoadedModel, factors: dict[str, Factors], rule: str) -> None:
        self.loaded = loaded
        self.factors = factors
        self.rule = rule
        self.delta = {
            name: torch.zeros_like(f.S, dtype=torch.float32, requires_grad=True) for name, f in factors.items()
        }
        self._params = dict(loaded.model.named_parameters())
        self._leaves: dict[str, torch.Tensor] = {}

    @property
    def trainable(self) -> dict[str, torch.Tensor]:
        return self.delta

    @property
    def parameters(self) -> list[torch.Tensor]:
        return list(self.delta.values())

    def z(self) -> dict[str, torch.Tensor]:
        return {name: (1 + d).detach().clone() for name, d in self.delta.items()}

    def snapshot(self) -> dict[str, torch.Tensor]:
        return self.z()

    def expert_z(self, snapshot: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(snapshot)

    def write_files(self, snapshot: Mapping[str, torch.Tensor], folder: Path) -> dict[str, Path]:
        return {}

    @contextmanager
    def serving(self, engine: Engine, adapted: bool = True) -> Iterator[None]:
        """Swap W'(z) into the engine's model in place (or keep the base), and restore the base after."""
        engine.set_expert(self.z() if adapted else None, self.rule)
        try:
            yield
        finally:
            engine.set_expert(None)

    @contextmanager
    def step(self) -> Iterator[None]:
        """Materialise W'(1 + δ) once for all micro-batches of a step, then back-propagate into δ once.

        Micro-batches run against detached copies of W' that collect gradients; the single
        backward through the W'(z) graph afterwards costs one materialisation per step instead of
        one per micro-batch.
        """
        z = {name: 1 + d for name, d in self.delta.items()}
        graph = adapted_weights(self._params, self.factors, z, self.rule)
        self._leaves = {name: w.detach().requires_grad_() for name, w in graph.items()}
        try:
            yield
            used = [name for name, leaf in self._leaves.items() if leaf.grad is not None]
            if used:
                torch.autograd.backward([graph[n] for n in used], [self._leaves[n].grad for n in used])
        finally:
            self._leaves = {}

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits of the last `keep` positions under W'(1 + δ) (inside `step()`), differentiable in δ."""
        if not self._leaves:
            raise RuntimeError("SVFPolicy.logits runs inside `with policy.step():`")
        out = functional_forward(
            self.loaded.model,
            self._leaves,
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            logits_to_keep=keep,
        )
        return out.logits.float()

    @torch.no_grad()
    def base_logits(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, keep: int) -> torch.Tensor:
        out = self.loaded.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep)
        return out.logits.float()


def resolve_rollout(config: TrainConfig, task: Task, examples: Sequence[Example]) -> str:
    """`auto`: for multiple choice, answer letters when the prompt lists lettered choices and choice
    likelihoods when it is a plain cloze question; otherwise free generation."""
    multiple_choice = all(e.choices and e.answer_index is not None for e in examples)
    if config.rollout == "auto":
        if not multiple_choice or config.objective != "reinforce":
            return "generate"
        return "choices" if task.uses_chat_template else "likelihood"
    if config.rollout in ("choices", "likelihood") and not multiple_choice:
        raise BadInputError(f"--rollout {config.rollout} needs a multiple-choice task, and {config.task!r} is not one")
    return config.rollout


def choice_objective(
    logp: torch.Tensor, base_logp: torch.Tensor, answer_index: int, baseline: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """REINFORCE over a handful of answers, with every answer enumerated instead of sampled.

    For π = softmax over the answers, rewards r (+1 right, −1 wrong) and b = Σ π r (or 0): the
    surrogate −Σ_c sg(π_c)(r_c − b) log π_c has the exact expected-reward gradient. Returns the
    surrogate, the expected reward and KL(π ‖ π_base); `logp` must be log-normalised.
    """
    reward = -torch.ones_like(logp)
    reward[answer_index] = 1.0
    probs = logp.exp()
    expected = (probs.detach() * reward).sum()
    advantage = reward - (expected if baseline != "none" else 0.0)
    surrogate = -(probs.detach() * advantage * logp).sum()
    kl = (probs * (logp - base_logp)).sum()
    return surrogate, expected.detach(), kl


def advantages(rewards: torch.Tensor, baseline: str, group_size: int) -> torch.Tensor:
    """r minus the baseline: nothing, the batch mean, or the mean of each prompt's own samples."""
    if baseline == "mean":
        return rewards - rewards.mean()
    if baseline == "group":
        grouped = rewards.view(-1, group_size)
        return (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    return rewards


def kl_divergence(logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """KL(π_z ‖ π_base) over the last dimension, per position."""
    logp = torch.log_softmax(logits, dim=-1)
    base = torch.log_softmax(base_logits, dim=-1)
    return (logp.exp() * (logp - base)).sum(-1)


def batch_at(count: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Example indices of batch `step`: a fresh seeded permutation each epoch.

    The batch depends only on (seed, step), so a resumed run sees exactly the batches it would have.
    """
    if batch_size > count:
        raise BadInputError(f"batch size {batch_size} exceeds the {count} training examples; lower --batch-size")
    per_epoch = count // batch_size
    epoch, index = divmod(step, per_epoch)
    order = list(range(count))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[index * batch_size : (index + 1) * batch_size]


class Trainer:
    """Runs the optimisation; the CLI and tests drive it, the registry stores what it returns.

    With a `world` of several processes each one rolls out and back-propagates its slice of every
    batch; losses keep the whole batch's normalisers, so the summed gradients equal one process's.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        task: Task,
        train: Sequence[Example],
        validation: Sequence[Example],
        config: TrainConfig,
        *,
        targets: Sequence[TargetMatrix] | None = None,
        run_dir: Path,
        on_step: Callable[[StepRecord], None] | None = None,
        world: World | None = None,
        engine: str = "hf",
    ) -> None:
        if not train:
            raise BadInputError(f"task {task.name!r} gave no training examples; check --data and --split")
        self.loaded = loaded
        self.task = task
        self.train = list(train if config.train_limit is None else train[: config.train_limit])
        self.validation = list(validation if config.val_limit is None else validation[: config.val_limit])
        self.config = config
        self.world = world or World()
        self.rollout = resolve_rollout(config, task, self.train)
        selected = list(targets) if targets is not None else loaded.select(config.targets)
        self.policy: Policy
        if config.adapter == "lora":
            from t2cli.lora import LoRAPolicy

            self.policy = LoRAPolicy(loaded, selected, config.rank, seed=config.seed)
        else:
            self.policy = SVFPolicy(loaded, decompose(loaded, selected).factors, config.rule)
        self.optimizer = torch.optim.Adam(self.policy.parameters, lr=config.lr)
        self.engine = make_engine(
            rollout_engine(engine, config, self.rollout),
            self.policy.loaded,
            batch_size=max(config.batch_size * config.samples, 1),
        )
        self.run_dir = run_dir
        self.on_step = on_step
        self.pad_id = pad_token_id(loaded.tokenizer)
        self._labels: dict[tuple[str, ...], list[int]] = {}
        self._base_choices: dict[str, torch.Tensor] = {}

    # ----- objectives -------------------------------------------------------------------------

    def _label_ids(self, example: Example) -> list[int]:
        labels = self.task.choice_labels(example)
        if labels not in self._labels:
            self._labels[labels] = label_token_ids(self.loaded.tokenizer, labels, chat=self.loaded.chat)
        return self._labels[labels]

    def _prompts(self, examples: Sequence[Example]) -> list[Prompt]:
        return [prompt_for(self.task, e, self.loaded.chat) for e in examples]

    def _local(self, examples: Sequence[Example]) -> list[Example]:
        """This process's slice of the batch (all of it in one process)."""
        return [examples[i] for i in self.world.shard(len(examples))]

    def _choice_step(self, examples: Sequence[Example]) -> StepStats:
        """Exact expected-reward gradient over the choice letters; returns reward, kl, tokens, times."""
        started = time.perf_counter()
        local = self._local(examples)
        encoded = [encode_prompt(self.loaded.tokenizer, p) for p in self._prompts(local)]
        total_reward = total_kl = 0.0
        tokens = 0
        for chunk in _chunks(range(len(local)), self.config.micro_batch):
            ids, mask, positions = left_pad([encoded[i] for i in chunk], self.pad_id)
            logits = self.policy.logits(ids, mask, positions, keep=1)[:, -1]
            base = self._base_choice_logprobs([local[i] for i in chunk], ids, mask, positions)
            loss = torch.zeros(())
            for row, index in enumerate(chunk):
                example = local[index]
                logp = torch.log_softmax(logits[row, self._label_ids(example)], dim=-1)
                surrogate, expected, kl = choice_objective(logp, base[row], example.answer_index, self.config.baseline)
                loss = loss + (surrogate + self.config.kl * kl) / len(examples)
                total_reward += float(expected)
                total_kl += float(kl.detach())
            loss.backward()
            tokens += int(mask.sum())
        return self._choice_stats(total_reward, total_kl, tokens, len(examples), started)

    def _choice_stats(self, reward: float, kl: float, tokens: int, count: int, started: float) -> StepStats:
        """Step figures of an enumerated-choice objective, summed over the processes."""
        reward, kl, tokens = self.world.sum(reward, kl, tokens)
        return StepStats(reward / count, kl / count, int(tokens), grad_s=time.perf_counter() - started)

    def _base_choice_logprobs(
        self, examples: Sequence[Example], ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> list[torch.Tensor]:
        """The base model's distribution over each example's letters: fixed, so computed once per example."""
        missing = [row for row, e in enumerate(examples) if e.id not in self._base_choices]
        if missing:
            rows = torch.tensor(missing)
            base = self.policy.base_logits(ids[rows], mask[rows], positions[rows], keep=1)[:, -1]
            for row, logits in zip(missing, base, strict=True):
                letters = self._label_ids(examples[row])
                self._base_choices[examples[row].id] = torch.log_softmax(logits[letters], dim=-1)
        return [self._base_choices[e.id] for e in examples]

    def _likelihood_step(self, examples: Sequence[Example]) -> StepStats:
        """Exact expected-reward gradient over the choices, each scored by its text's log-likelihood.

        Every (question, choice) sequence is scored in micro-batches of similar length (the choices of
        one question rarely share a length), then each question's choices are normalised together and
        one backward runs over the whole step.
        """
        started = time.perf_counter()
        local = self._local(examples)
        encoded = [encode_prompt(self.loaded.tokenizer, p) for p in self._prompts(local)]
        sequences, owners = [], []
        for index, example in enumerate(local):
            for text in example.choices:
                tail = self.loaded.tokenizer(choice_continuation(text), add_special_tokens=False)["input_ids"]
                sequences.append((encoded[index], tail))
                owners.append(index)
        members = [[i for i, owner in enumerate(owners) if owner == index] for index in range(len(local))]
        uncached = {i for i, e in enumerate(local) if e.id not in self._base_choices}
        scores: dict[int, torch.Tensor] = {}
        base_scores: dict[int, float] = {}
        tokens = 0
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]) + len(sequences[i][1]))
        for chunk in _chunks(order, self.config.micro_batch):
            ids, mask, positions, keep, completion_mask = _continuation_batch(
                [sequences[i] for i in chunk], self.pad_id
            )
            logits = self.policy.logits(ids, mask, positions, keep)
            scores.update(zip(chunk, sequence_logprobs(logits, ids, completion_mask), strict=True))
            if any(owners[i] in uncached for i in chunk):
                base = sequence_logprobs(self.policy.base_logits(ids, mask, positions, keep), ids, completion_mask)
                base_scores.update(zip(chunk, base.tolist(), strict=True))
            tokens += int(mask.sum())
        for index in uncached:
            base_logp = torch.log_softmax(torch.tensor([base_scores[i] for i in members[index]]), dim=-1)
            self._base_choices[local[index].id] = base_logp
        loss = torch.zeros(())
        total_reward = total_kl = 0.0
        for index, example in enumerate(local):
            logp = torch.log_softmax(torch.stack([scores[i] for i in members[index]]), dim=-1)
            surrogate, expected, kl = choice_objective(
                logp, self._base_choices[example.id], example.answer_index, self.config.baseline
            )
            loss = loss + (surrogate + self.config.kl * kl) / len(examples)
            total_reward += float(expected)
            total_kl += float(kl.detach())
        loss.backward()
        return self._choice_stats(total_reward, total_kl, tokens, len(examples), started)

    def _generate_step(self, examples: Sequence[Example], step: int) -> StepStats:
        config = self.config
        shard = self.world.shard(len(examples))
        local = [examples[i] for i in shard]
        prompts = [p for p in self._prompts(local) for _ in range(config.samples)]
        repeated = [e for e in local for _ in range(config.samples)]
        started = time.perf_counter()
        # Each process samples its slice with its own seed; process 0 (or a lone one) keeps the usual seed.
        sampling = Sampling(
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            seed=config.seed * 100_003 + step + self.world.rank * 1_000_003,
        )
        with self.policy.serving(self.engine):
            generations = self.engine.generate(prompts, sampling)
        sampled = time.perf_counter()
        local_rewards = torch.tensor(self.task.score_many(repeated, [g.text for g in generations]), dtype=torch.float32)
        scored = time.perf_counter()
        # Baselines compare rewards across the batch, so every process needs the whole reward vector.
        first = shard.start * config.samples
        rewards = self.world.assemble(local_rewards, first, len(examples) * config.samples)
        advantage = advantages(rewards, config.baseline, config.samples)[first : first + len(local_rewards)]
        sequences = [
            (encode_prompt(self.loaded.tokenizer, p), list(g.token_ids))
            for p, g in zip(prompts, generations, strict=True)
        ]
        with self.policy.step():
            total_kl, tokens = self._sequence_pass(sequences, advantage, normaliser=len(rewards))
        return StepStats(
            float(rewards.mean()), total_kl, tokens, sampled - started, scored - sampled, time.perf_counter() - scored
        )

    def _sequence_pass(
        self, sequences: Sequence[tuple[list[int], list[int]]], weights: torch.Tensor, normaliser: int | None
    ) -> tuple[float, int]:
        """Backward of −Σ w·log π(y|x)/n + β·KL over completion tokens; returns (mean KL per token, tokens).

        `sequences` are this process's; n (`normaliser`, or the batch's completion-token count when
        None) and the KL's token count are the whole batch's, and the returned figures too.
        """
        (completion_tokens,) = self.world.sum(sum(len(c) for _, c in sequences))
        completion_tokens = completion_tokens or 1
        normaliser = normaliser or completion_tokens
        total_kl = 0.0
        tokens = 0
        for chunk in _chunks(range(len(sequences)), self.config.micro_batch):
            ids, mask, positions, keep, completion_mask = _continuation_batch(
                [sequences[i] for i in chunk], self.pad_id
            )
            if keep == 1:
                continue
            logits = self.policy.logits(ids, mask, positions, keep)
            loss = -(weights[list(chunk)] * sequence_logprobs(logits, ids, completion_mask)).sum() / normaliser
            if self.config.kl > 0:
                base = self.policy.base_logits(ids, mask, positions, keep)[:, :-1]
                kl = (kl_divergence(logits[:, :-1], base) * completion_mask).sum()
                loss = loss + self.config.kl * kl / completion_tokens
                total_kl += float(kl.detach())
            loss.backward()
            tokens += int(mask.sum())
        total_kl, total_tokens = self.world.sum(total_kl, tokens)
        return total_kl / completion_tokens, int(total_tokens)

    def _nll_step(self, examples: Sequence[Example]) -> StepStats:
        started = time.perf_counter()
        sequences = []
        local = self._local(examples)
        for example, prompt in zip(local, self._prompts(local), strict=True):
            reference = self.task.reference_completion(example)
            if reference is None:
                raise BadInputError(
                    f"task {self.task.name!r} has no reference answers; --method {self.config.method} needs them"
                )
            tail = self.loaded.tokenizer(reference, add_special_tokens=False)["input_ids"]
            sequences.append((encode_prompt(self.loaded.tokenizer, prompt), tail))
        # NLL per token: every reference token weighs the same, as in supervised fine-tuning.
        kl, tokens = self._sequence_pass(sequences, torch.ones(len(sequences)), normaliser=None)
        return StepStats(0.0, kl, tokens, grad_s=time.perf_counter() - started)

    def _step(self, examples: Sequence[Example], step: int) -> StepStats:
        if self.config.objective == "nll":
            with self.policy.step():
                return self._nll_step(examples)
        if self.rollout == "choices":
            with self.policy.step():
                return self._choice_step(examples)
        if self.rollout == "likelihood":
            with self.policy.step():
                return self._likelihood_step(examples)
        return self._generate_step(examples, step)

    # ----- validation -------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self, adapted: bool = True) -> float:
        """Validation score in [0, 1] (accuracy for ±1 rewards) of the current policy (adapted=False: the base).

        Each process scores its slice of the validation examples; the sums are added up.
        """
        if not self.validation:
            return float("nan")
        local = self._local(self.validation)
        total = 0.0
        if local:
            with self.policy.serving(self.engine, adapted):
                result = evaluate(
                    self.engine,
                    self.task,
                    local,
                    chat=self.loaded.chat,
                    mode=self.rollout if self.rollout in ("choices", "likelihood") else "generate",
                    max_new_tokens=self.config.max_new_tokens,
                )
            total = result.score * len(local)
        (total,) = self.world.sum(total)
        return total / len(self.validation)

    # ----- checkpoints ------------------------------------------------------------------------

    def _checkpoint_paths(self) -> tuple[Path, Path]:
        return self.run_dir / "checkpoint.safetensors", self.run_dir / "checkpoint.json"

    def save_checkpoint(self, state: RunState) -> None:
        """Trained tensors, Adam's moments and the best snapshot (safetensors) plus counters (JSON), each atomic.

        The JSON names the step and is replaced last, so a run killed between the two files
        resumes from the previous complete checkpoint's counters only if the tensors match it.
        """
        from safetensors.torch import save_file

        tensors_path, state_path = self._checkpoint_paths()
        tensors: dict[str, torch.Tensor] = {}
        adam_steps: dict[str, float] = {}
        # "delta/" names the trained tensors (δ for SVF, A and B for LoRA); SVF checkpoints predate LoRA.
        for name, trained in self.policy.trainable.items():
            tensors[f"delta/{name}"] = trained.detach().clone()
            moments = self.optimizer.state.get(trained)
            if moments:
                tensors[f"exp_avg/{name}"] = moments["exp_avg"].clone()
                tensors[f"exp_avg_sq/{name}"] = moments["exp_avg_sq"].clone()
                adam_steps[name] = float(moments["step"])
        tensors |= {f"best/{name}": t for name, t in state.best.items()}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        temp_tensors = tensors_path.with_suffix(".tmp")
        save_file(tensors, str(temp_tensors), metadata={"step": str(state.step)})
        os.replace(temp_tensors, tensors_path)
        counters = {k: v for k, v in asdict(state).items() if k != "best"}
        temp_state = state_path.with_suffix(".tmp")
        temp_state.write_text(json.dumps(counters | {"adam_steps": adam_steps, "config": asdict(self.config)}) + "\n")
        os.replace(temp_state, state_path)

    def load_checkpoint(self) -> RunState | None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        tensors_path, state_path = self._checkpoint_paths()
        if not state_path.exists() or not tensors_path.exists():
            return None
        saved = json.loads(state_path.read_text())
        # Rebuilt through TrainConfig, so options added since the checkpoint compare at their defaults.
        try:
            same = TrainConfig(**saved.pop("config")) == self.config
        except (TypeError, BadInputError):
            same = False
        if not same:
            raise BadInputError(
                f"checkpoint in {self.run_dir} was made with other options; resume with the same options"
            )
        with safe_open(str(tensors_path), framework="pt") as handle:
            if handle.metadata().get("step") != str(saved["step"]):
                raise BadInputError(f"checkpoint in {self.run_dir} is incomplete; start again without --resume")
        tensors = load_file(str(tensors_path))
        adam_steps = saved.pop("adam_steps")
        with torch.no_grad():
            for name, trained in self.policy.trainable.items():
                trained.copy_(tensors[f"delta/{name}"])
                if name in adam_steps:
                    self.optimizer.state[trained] = {
                        "step": torch.tensor(adam_steps[name]),
                        "exp_avg": tensors[f"exp_avg/{name}"],
                        "exp_avg_sq": tensors[f"exp_avg_sq/{name}"],
                    }
        best = {name.removeprefix("best/"): t for name, t in tensors.items() if name.startswith("best/")}
        return RunState(best=best, **saved)

    # ----- the loop ---------------------------------------------------------------------------

    def run(self, *, resume: bool = False) -> TrainResult:
        """Train, validate and checkpoint; every process runs this, only the main one writes files.

        The main process's result holds the whole log; the others hold the steps they ran.
        """
        config = self.config
        main = self.world.main
        started = time.perf_counter()
        state = self.load_checkpoint() if resume else None
        # Every process starts from the main one's parameters (LoRA's random A included).
        self.world.broadcast_(self.policy.parameters)
        log_path = self.run_dir / "log.jsonl"
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if state is None:
            base_val = self.validate(adapted=False)
            state = RunState(step=0, base_val=base_val, best_val=base_val, best_step=0, best=self.policy.snapshot())
            if main:
                log_path.write_text("")
        records: list[StepRecord] = []
        if main:
            # Steps logged after the last checkpoint are redone, so drop their lines.
            records = [StepRecord(**json.loads(line)) for line in log_path.read_text().splitlines() if line.strip()]
            records = [r for r in records if r.step <= state.step]
            log_path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records))
        for step in range(state.step + 1, config.steps + 1):
            examples = [self.train[i] for i in batch_at(len(self.train), config.batch_size, config.seed, step - 1)]
            self.optimizer.zero_grad(set_to_none=True)
            stats = self._step(examples, step)
            self.world.sum_gradients(self.policy.parameters)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters, config.grad_clip))
            if math.isfinite(grad_norm):
                self.optimizer.step()
            record = StepRecord(
                step, stats.reward, stats.kl, grad_norm, stats.tokens, stats.sample_s, stats.score_s, stats.grad_s
            )
            if step % config.val_every == 0 or step == config.steps:
                record.val_score = self.validate()
                last = config.select == "last" and step == config.steps
                if record.val_score > state.best_val or last:
                    state.best_val, state.best_step, state.best = record.val_score, step, self.policy.snapshot()
            state.step = step
            records.append(record)
            if main:
                with log_path.open("a") as log:
                    log.write(json.dumps(asdict(record)) + "\n")
                if step % config.checkpoint_every == 0 or step == config.steps:
                    self.save_checkpoint(state)
            if self.on_step is not None:
                self.on_step(record)
        files = self.policy.write_files(state.best, self.run_dir / "adapter") if main else {}
        return TrainResult(
            z=self.policy.expert_z(state.best),
            best_step=state.best_step,
            best_val=state.best_val,
            base_val=state.base_val,
            steps=records,
            rollout=self.rollout,
            trainable_parameters=sum(p.numel() for p in self.policy.parameters),
            peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            seconds=time.perf_counter() - started,
            files=files,
        )


def _continuation_batch(
    sequences: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Left-padded prompt+continuation rows, the logits window `keep` that covers every
    continuation, and the mask of continuation tokens among the last keep − 1 positions."""
    ids, mask, positions = left_pad([prompt + tail for prompt, tail in sequences], pad_id)
    keep = max(len(tail) for _, tail in sequences) + 1
    completion_mask = torch.zeros((len(sequences), keep - 1), dtype=torch.float32)
    for row, (_, tail) in enumerate(sequences):
        if tail:
            completion_mask[row, -len(tail) :] = 1.0
    return ids, mask, positions, keep, completion_mask


def sequence_logprobs(logits: torch.Tensor, ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Σ log p(token) over each row's continuation, from the logits of the last `keep` positions."""
    keep = logits.shape[1]
    targets = ids[:, -keep + 1 :]
    token_logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logp * completion_mask).sum(-1)


def rollout_engine(name: str, config: TrainConfig, rollout: str) -> str:
    """The engine that samples rollouts and validates: `auto` takes vLLM only where it pays, for
    generated rollouts of an SVF policy (the other rollouts score on the training model itself)."""
    from t2cli.engines import check_engine

    check_engine(name)
    if config.adapter == "lora" and name == "vllm":
        raise BadInputError("--engine vllm serves SVF experts; LoRA training samples with --engine hf")
    if name == "auto" and (config.adapter != "svf" or rollout != "generate"):
        return "hf"
    return name


def _chunks(indices: Sequence[int] | range, size: int) -> Iterator[list[int]]:
    indices = list(indices)
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def data_sha256(examples: Sequence[Example]) -> str:
    """Identifies the training data by content (ids, questions, references), not by file path."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.question, example.reference], default=str).encode())
    return digest.hexdigest()


def training_data(
    task_name: str, data: str | None, seed: int, registry: Registry, model_slug: str, experts: str | None
) -> tuple[Task, list[Example], list[Example]]:
    """The task with its train and validation examples.

    ARC's choices are shuffled (seeded) so that a preference for one letter earns nothing. The
    classification task `cls` is built from the experts named in `experts`: their manifests give
    the categories (their tasks) and the data each was trained on.
    """
    from t2cli.tasks import get_task, resolve_task

    if task_name == "cls":
        if not experts:
            raise BadInputError("--task cls needs --experts a,b,c: the experts whose tasks are the categories")
        members, sources = [], {}
        for spec in experts.split(","):
            manifest = registry.resolve(spec.strip(), model_slug).manifest()
            if not manifest.task:
                raise BadInputError(f"expert {manifest.ref} records no task; it cannot be a category of cls")
            members.append(resolve_task(manifest.task, **({"shuffle_seed": seed} if manifest.task == "arc" else {})))
            sources[manifest.task] = manifest.provenance.get("data")
        task = get_task("cls", tasks=members, sources=sources, seed=seed)
        data = None
    else:
        task = resolve_task(task_name, **({"shuffle_seed": seed} if task_name == "arc" else {}))
    return task, task.load(data, "train"), task.load(data, "validation")


def publish(
    registry: Registry,
    loaded: LoadedModel,
    task: Task,
    data: str | None,
    train: Sequence[Example],
    config: TrainConfig,
    result: TrainResult,
    name: str,
) -> ExpertRef:
    """Store the best z (and a LoRA run's adapter files) as a new version, with provenance and metrics."""
    from t2cli.expert import Expert, new_manifest

    by_name = {t.name: t for t in loaded.targets}
    provenance = {
        "kind": "trained",
        "task": task.name,
        "data": data,
        "data_sha256": data_sha256(train),
        "method": config.method,
        "rollout": result.rollout,
        "hyperparameters": asdict(config),
        "steps": len(result.steps),
        "best_step": result.best_step,
        "seed": config.seed,
    }
    categories = getattr(task, "categories", None)
    if categories:
        # A classifier is asked over exactly these categories, in this order, when it routes.
        provenance["categories"] = [list(category) for category in categories]
    if config.adapter == "lora":
        from t2cli.lora import adapter_provenance

        provenance["adapter"] = adapter_provenance(config.rank)
    manifest = new_manifest(
        name=name,
        base_model=loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets=[by_name[n] for n in result.z],
        provenance=provenance,
        svf_rule=config.rule,
        task=task.name,
        description=task.description,
        metrics={
            "val_score": result.best_val,
            "base_val_score": result.base_val,
            "trainable_parameters": result.trainable_parameters,
        },
    )
    z = {n: z.float().contiguous() for n, z in result.z.items()}
    return registry.publish(Expert(manifest, z), extra_files=result.files)
