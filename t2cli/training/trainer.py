"""The training loop: batches, steps, validation, checkpoints and resume, for any policy and objective.

`lora` and `lora-nll` train a PEFT LoRA adapter on the same matrices with the same objectives, the
baseline SVF is compared with (t2cli.training.lora_policy). The trainer sees either through one policy
interface (t2cli.training.policy.Policy). Under `accelerate launch` the batch is split across
processes (t2cli.training.distributed).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from t2cli.device import peak_memory_mb, reset_peak_memory
from t2cli.engines import AUTO, check_engine, loads_weights_itself, make_engine, resolve_engine
from t2cli.engines.base import pad_token_id
from t2cli.engines.evaluate import evaluate
from t2cli.errors import BadInputError
from t2cli.models.loading import LoadedModel
from t2cli.targets import TargetMatrix
from t2cli.tasks.base import Example, Task
from t2cli.training import checkpoint
from t2cli.training.config import TrainConfig
from t2cli.training.distributed import World
from t2cli.training.objectives import (
    StepContext,
    choice_step,
    generate_step,
    likelihood_step,
    nll_step,
    resolve_rollout,
)
from t2cli.training.policy import Policy, SVFPolicy
from t2cli.training.records import RunState, StepRecord, StepStats, TrainResult
from t2cli.training.run_folder import StepEvent, append_log, read_log, rewrite_log
from t2cli.training.sharding import shard_layers

StepObserver = Callable[[StepEvent], None]


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
    `observers` hear of every step (progress bars, curves): the caller passes them where it reports.
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
        observers: Sequence[StepObserver] = (),
        world: World | None = None,
        engine: str = "hf",
        shard: bool = False,
        recompute: bool = False,
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
        self.sharded = shard and self.world.size > 1
        if shard:
            check_shardable(config, self.rollout, self.world, engine)
        selected = list(targets) if targets is not None else loaded.select(config.targets)
        self.policy: Policy
        if config.adapter == "lora":
            from t2cli.training.lora_policy import LoRAPolicy

            self.policy = LoRAPolicy(loaded, selected, config.rank, seed=config.seed, recompute=recompute)
        else:
            self.policy = SVFPolicy.for_targets(
                loaded, selected, config.rule, config.rank, sharded=self.sharded, recompute=recompute
            )
            if self.sharded:
                shard_layers(self.policy.loaded.model, self.world)
        self.optimizer = torch.optim.Adam(self.policy.parameters, lr=config.lr)
        self.engine = make_engine(
            rollout_engine(engine, config, self.rollout, in_place=self.sharded),
            self.policy.loaded,
            batch_size=max(config.batch_size * config.samples, 1),
        )
        self.run_dir = run_dir
        self.observers = list(observers)
        self.pad_id = pad_token_id(loaded.tokenizer)
        self.context = StepContext(self.policy, task, loaded, self.world, config, self.pad_id, self.sharded)

    def _step(self, examples: Sequence[Example], step: int) -> StepStats:
        if self.config.objective == "nll":
            return nll_step(self.context, examples)
        if self.rollout == "choices":
            return choice_step(self.context, examples)
        if self.rollout == "likelihood":
            return likelihood_step(self.context, examples)
        return generate_step(self.context, self.engine, examples, step)

    # ----- validation -------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self, adapted: bool = True) -> float:
        """Validation score in [0, 1] (accuracy for ±1 rewards) of the current policy (adapted=False: the base).

        Each process scores its slice of the validation examples; the sums are added up (sharded, every
        process scores them all: the layers' gathers need every process in every forward).
        """
        if not self.validation:
            return float("nan")
        local = self.validation if self.sharded else self.context.local(self.validation)
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
        if not self.sharded:
            (total,) = self.world.sum(total)
        return total / len(self.validation)

    # ----- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self, state: RunState) -> None:
        checkpoint.save(self.run_dir, self.policy, self.optimizer, self.config, state)

    def load_checkpoint(self) -> RunState | None:
        return checkpoint.load(self.run_dir, self.policy, self.optimizer, self.config)

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
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if state is None:
            base_val = self.validate(adapted=False)
            state = RunState(step=0, base_val=base_val, best_val=base_val, best_step=0, best=self.policy.snapshot())
            if main:
                rewrite_log(self.run_dir, [])
        records: list[StepRecord] = []
        if main:
            # Steps logged after the last checkpoint are redone, so drop their lines.
            records = [r for r in read_log(self.run_dir) if r.step <= state.step]
            rewrite_log(self.run_dir, records)
        for step in range(state.step + 1, config.steps + 1):
            examples = [self.train[i] for i in batch_at(len(self.train), config.batch_size, config.seed, step - 1)]
            self.optimizer.zero_grad(set_to_none=True)
            reset_peak_memory(self.loaded.device)
            stats = self._step(examples, step)
            self.world.sum_gradients(self.policy.parameters)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters, config.grad_clip))
            if math.isfinite(grad_norm):
                self.optimizer.step()
            record = StepRecord(
                step, stats.reward, stats.kl, grad_norm, stats.tokens, stats.sample_s, stats.score_s, stats.grad_s
            )
            record.peak_memory_mb = round(peak_memory_mb(self.loaded.device), 1)
            if step % config.val_every == 0 or step == config.steps:
                record.val_score = self.validate()
                last = config.select == "last" and step == config.steps
                if record.val_score > state.best_val or last:
                    state.best_val, state.best_step, state.best = record.val_score, step, self.policy.snapshot()
            state.step = step
            records.append(record)
            if main:
                append_log(self.run_dir, record)
                if step % config.checkpoint_every == 0 or step == config.steps:
                    self.save_checkpoint(state)
            event = StepEvent(record, tuple(records), state.base_val, self.run_dir)
            for observer in self.observers:
                observer(event)
        files = self.policy.write_files(state.best, self.run_dir / "adapter") if main else {}
        return TrainResult(
            z=self.policy.expert_z(state.best),
            best_step=state.best_step,
            best_val=state.best_val,
            base_val=state.base_val,
            steps=records,
            rollout=self.rollout,
            trainable_parameters=sum(p.numel() for p in self.policy.parameters),
            # CUDA's peak restarts every step: the run's peak is the largest of the steps' and the rest.
            peak_memory_mb=max([peak_memory_mb(self.loaded.device)] + [r.peak_memory_mb or 0.0 for r in records]),
            seconds=time.perf_counter() - started,
            files=files,
        )


def rollout_engine(name: str, config: TrainConfig, rollout: str, *, in_place: bool = False) -> str:
    """The engine that samples rollouts and validates: `auto` takes an engine that loads the weights itself
    only where it pays, for generated REINFORCE rollouts of an SVF policy (the other rollouts score on the
    training model itself, as every rollout of a sharded model does: `in_place`). An nll run only
    validates: a second copy of the weights and its KV cache (~4 GB with vLLM on the CPU) would be most
    of its memory for a few validations."""
    check_engine(name)
    no_rollouts = config.objective != "reinforce" or rollout != "generate"
    if name == AUTO and (in_place or config.adapter != "svf" or no_rollouts):
        return resolve_engine(AUTO, in_place=True)
    if config.adapter == "lora" and loads_weights_itself(name):
        raise BadInputError(
            f"--engine {name} serves SVF experts on weights of its own; LoRA training samples with "
            f"--engine {resolve_engine(AUTO, in_place=True)}"
        )
    return name


def check_shardable(config: TrainConfig, rollout: str, world: World, engine: str) -> None:
    """Refuse, before any model work, the runs `--shard` cannot take (each with what to do instead)."""
    if config.adapter != "svf":
        raise BadInputError("--shard trains SVF experts; train a LoRA baseline without --shard")
    if loads_weights_itself(engine):
        raise BadInputError(
            f"--shard samples with the sharded model itself; use --engine {resolve_engine(AUTO, in_place=True)} "
            "(or auto)"
        )
    if rollout == "likelihood":
        raise BadInputError(
            "--shard does not take --rollout likelihood (processes would score unequal numbers of choices); "
            "use --rollout choices or --method nll"
        )
    if config.batch_size % world.size:
        raise BadInputError(
            f"--shard needs --batch-size divisible by the {world.size} processes (equal slices); "
            f"got {config.batch_size}"
        )
