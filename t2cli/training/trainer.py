"""The training loop: batches, steps, validation, checkpoints and resume, for any policy and objective.

`lora` and `lora-nll` train a PEFT LoRA adapter on the same matrices with the same objectives, the
baseline SVF is compared with (t2cli.training.lora_policy). The trainer sees either through one policy
interface (t2cli.training.policy.Policy). Under `accelerate launch` the batch is split across
processes (t2cli.training.distributed).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from t2cli.engines import make_engine
from t2cli.engines.base import Prompt, Sampling, encode_prompt, label_token_ids, left_pad, pad_token_id
from t2cli.engines.evaluate import choice_continuation, evaluate, prompt_for
from t2cli.errors import BadInputError
from t2cli.models import LoadedModel, TargetMatrix
from t2cli.plots.training import write_run_curves
from t2cli.svd import decompose
from t2cli.tasks.base import Example, Task
from t2cli.training.distributed import World

if TYPE_CHECKING:
    pass
from t2cli.training.config import TrainConfig
from t2cli.training.objectives import (
    _continuation_batch,
    advantages,
    choice_objective,
    kl_divergence,
    resolve_rollout,
    sequence_logprobs,
)
from t2cli.training.policy import Policy, SVFPolicy
from t2cli.training.records import RunState, StepRecord, StepStats, TrainResult


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
            from t2cli.training.lora_policy import LoRAPolicy

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
                if record.val_score is not None:
                    write_run_curves(self.run_dir, records, state.base_val)
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
