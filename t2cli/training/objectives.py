"""The training objectives: REINFORCE with a KL penalty to the base model, gradients to z only.

For a batch of prompts x and completions y sampled under the current z (no grad), with task
rewards r and advantages A = r − baseline:

    loss(z) = −mean(A · log π_z(y | x)) + β · KL(π_z ‖ π_base)

where log π_z(y|x) sums over y's tokens and the KL is taken over the vocabulary at every sampled
position (t2cli/training/logprobs.py, a chunk of positions at a time, on the model's device).
Gradients flow through the side path W x + U (s(z − 1) ⊙ Vᵀ x) into z alone (t2cli/side_path.py).

Rollouts:
- `generate`: free generation and the task's reward (any task);
- `choices`: for multiple-choice tasks, the policy is the model's next-token distribution over the
  choice letters. With a handful of answers the expected reward Σ_c π(c) r(c) is computed exactly
  — the REINFORCE gradient with every action enumerated, so no sampling noise;
- `likelihood`: the same exact gradient, each choice scored by its text's log-likelihood.

`nll` trains the same z on the reference answers' next-token loss (the paper's ablation).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from t2cli.engines.base import Engine, Prompt, Sampling, encode_prompt, label_token_ids, left_pad
from t2cli.engines.evaluate import choice_continuation, prompt_for
from t2cli.errors import BadInputError
from t2cli.tasks.base import Example, Task
from t2cli.training.config import TrainConfig
from t2cli.training.distributed import World
from t2cli.training.logprobs import TokenScores, score_tokens
from t2cli.training.records import StepStats

if TYPE_CHECKING:
    from t2cli.models.loading import LoadedModel
    from t2cli.training.policy import Policy


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


def continuation_batch(
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


def continuation_scores(
    policy: Policy,
    ids: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    keep: int,
    completion_mask: torch.Tensor,
    *,
    base: bool = False,
    kl: bool = False,
) -> TokenScores:
    """log π(token) of each continuation token (and KL to the base there, with `kl`), on the model's device;
    under the base model itself with `base`."""
    run = policy.base_hidden if base else policy.hidden
    hidden = run(ids, mask, positions, keep)[:, :-1]
    base_hidden = policy.base_hidden(ids, mask, positions, keep)[:, :-1] if kl else None
    return score_tokens(policy.head, hidden, ids[:, -keep + 1 :], completion_mask, base_hidden)


@dataclass
class StepContext:
    """What every objective step reads: the policy, task, model (tokenizer, chat), process world and
    settings, and the caches that live for the whole run."""

    policy: Policy
    task: Task
    loaded: LoadedModel
    world: World
    config: TrainConfig
    pad_id: int
    # The model's layers are split across the processes (t2cli.training.sharding): every process must run
    # the same forwards, so each samples the whole batch and none skips a base pass another would run.
    sharded: bool = False
    labels: dict[tuple[str, ...], list[int]] = field(default_factory=dict)  # choice labels -> token ids
    base_choices: dict[str, torch.Tensor] = field(default_factory=dict)  # example id -> base log-probs

    def label_ids(self, example: Example) -> list[int]:
        labels = self.task.choice_labels(example)
        if labels not in self.labels:
            self.labels[labels] = label_token_ids(self.loaded.tokenizer, labels, chat=self.loaded.chat)
        return self.labels[labels]

    def prompts(self, examples: Sequence[Example]) -> list[Prompt]:
        return [prompt_for(self.task, e, self.loaded.chat) for e in examples]

    def local(self, examples: Sequence[Example]) -> list[Example]:
        """This process's slice of the batch (all of it in one process)."""
        return [examples[i] for i in self.world.shard(len(examples))]

    def choice_stats(self, reward: float, kl: float, tokens: int, count: int, started: float) -> StepStats:
        """Step figures of an enumerated-choice objective, summed over the processes."""
        reward, kl, tokens = self.world.sum(reward, kl, tokens)
        return StepStats(reward / count, kl / count, int(tokens), grad_s=time.perf_counter() - started)


def choice_step(ctx: StepContext, examples: Sequence[Example]) -> StepStats:
    """Exact expected-reward gradient over the choice letters; returns reward, kl, tokens, times."""
    started = time.perf_counter()
    local = ctx.local(examples)
    encoded = [encode_prompt(ctx.loaded.tokenizer, p) for p in ctx.prompts(local)]
    total_reward = total_kl = 0.0
    tokens = 0
    for chunk in chunks(range(len(local)), ctx.config.micro_batch):
        ids, mask, positions = left_pad([encoded[i] for i in chunk], ctx.pad_id)
        # Logits at the last position over the answer letters only: a handful of the head's rows.
        hidden = ctx.policy.hidden(ids, mask, positions, keep=1)[:, -1]
        base = _base_choice_logprobs(ctx, [local[i] for i in chunk], ids, mask, positions)
        loss = hidden.new_zeros((), dtype=torch.float32)
        for row, index in enumerate(chunk):
            example = local[index]
            letters = torch.tensor(ctx.label_ids(example), device=hidden.device)
            logp = torch.log_softmax(ctx.policy.head.logits(hidden[row], rows=letters), dim=-1)
            surrogate, expected, kl = choice_objective(logp, base[row], example.answer_index, ctx.config.baseline)
            loss = loss + (surrogate + ctx.config.kl * kl) / len(examples)
            total_reward += float(expected)
            total_kl += float(kl.detach())
        loss.backward()
        tokens += int(mask.sum())
    return ctx.choice_stats(total_reward, total_kl, tokens, len(examples), started)


def _base_choice_logprobs(
    ctx: StepContext, examples: Sequence[Example], ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
) -> list[torch.Tensor]:
    """The base model's distribution over each example's letters: fixed, so computed once per example."""
    missing = [row for row, e in enumerate(examples) if ctx.sharded or e.id not in ctx.base_choices]
    if missing:
        rows = torch.tensor(missing)
        base = ctx.policy.base_hidden(ids[rows], mask[rows], positions[rows], keep=1)[:, -1]
        for row, hidden in zip(missing, base, strict=True):
            letters = torch.tensor(ctx.label_ids(examples[row]), device=hidden.device)
            ctx.base_choices[examples[row].id] = torch.log_softmax(ctx.policy.head.logits(hidden, rows=letters), -1)
    return [ctx.base_choices[e.id] for e in examples]


def likelihood_step(ctx: StepContext, examples: Sequence[Example]) -> StepStats:
    """Exact expected-reward gradient over the choices, each scored by its text's log-likelihood.

    Every (question, choice) sequence is scored in micro-batches of similar length (the choices of
    one question rarely share a length), then each question's choices are normalised together and
    one backward runs over the whole step.
    """
    started = time.perf_counter()
    local = ctx.local(examples)
    encoded = [encode_prompt(ctx.loaded.tokenizer, p) for p in ctx.prompts(local)]
    sequences, owners = [], []
    for index, example in enumerate(local):
        for text in example.choices:
            tail = ctx.loaded.tokenizer(choice_continuation(text), add_special_tokens=False)["input_ids"]
            sequences.append((encoded[index], tail))
            owners.append(index)
    members = [[i for i, owner in enumerate(owners) if owner == index] for index in range(len(local))]
    uncached = {i for i, e in enumerate(local) if e.id not in ctx.base_choices}
    scores: dict[int, torch.Tensor] = {}
    base_scores: dict[int, float] = {}
    tokens = 0
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]) + len(sequences[i][1]))
    for chunk in chunks(order, ctx.config.micro_batch):
        ids, mask, positions, keep, completion_mask = continuation_batch([sequences[i] for i in chunk], ctx.pad_id)
        tokens_scored = continuation_scores(ctx.policy, ids, mask, positions, keep, completion_mask)
        scores.update(zip(chunk, tokens_scored.per_row(tokens_scored.logp, len(chunk)), strict=True))
        if any(owners[i] in uncached for i in chunk):
            base = continuation_scores(ctx.policy, ids, mask, positions, keep, completion_mask, base=True)
            base_scores.update(zip(chunk, base.per_row(base.logp, len(chunk)).tolist(), strict=True))
        tokens += int(mask.sum())
    device = ctx.policy.head.weight.device
    for index in uncached:
        base_logp = torch.log_softmax(torch.tensor([base_scores[i] for i in members[index]], device=device), dim=-1)
        ctx.base_choices[local[index].id] = base_logp
    loss = torch.zeros((), device=device)
    total_reward = total_kl = 0.0
    for index, example in enumerate(local):
        logp = torch.log_softmax(torch.stack([scores[i] for i in members[index]]), dim=-1)
        surrogate, expected, kl = choice_objective(
            logp, ctx.base_choices[example.id], example.answer_index, ctx.config.baseline
        )
        loss = loss + (surrogate + ctx.config.kl * kl) / len(examples)
        total_reward += float(expected)
        total_kl += float(kl.detach())
    loss.backward()
    return ctx.choice_stats(total_reward, total_kl, tokens, len(examples), started)


def generate_step(ctx: StepContext, engine: Engine, examples: Sequence[Example], step: int) -> StepStats:
    """REINFORCE on completions `engine` samples as the current policy, scored by the task."""
    config = ctx.config
    shard = ctx.world.shard(len(examples))
    first, count = shard.start * config.samples, len(shard) * config.samples
    sampled_examples = examples if ctx.sharded else [examples[i] for i in shard]
    prompts = [p for p in ctx.prompts(sampled_examples) for _ in range(config.samples)]
    repeated = [e for e in sampled_examples for _ in range(config.samples)]
    started = time.perf_counter()
    # Each process samples its slice with its own seed; process 0 (or a lone one) keeps the usual seed.
    # Sharded, every process samples the whole batch with the same seed (the same completions everywhere).
    sampling = Sampling(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed * 100_003 + step + (0 if ctx.sharded else ctx.world.rank * 1_000_003),
    )
    with ctx.policy.serving(engine):
        generations = engine.generate(prompts, sampling)
    sampled = time.perf_counter()
    sampled_rewards = torch.tensor(ctx.task.score_many(repeated, [g.text for g in generations]), dtype=torch.float32)
    scored = time.perf_counter()
    # Baselines compare rewards across the batch, so every process needs the whole reward vector.
    if ctx.sharded:
        rewards = sampled_rewards
        prompts, generations = prompts[first : first + count], generations[first : first + count]
    else:
        rewards = ctx.world.assemble(sampled_rewards, first, len(examples) * config.samples)
    advantage = advantages(rewards, config.baseline, config.samples)[first : first + count]
    sequences = [
        (encode_prompt(ctx.loaded.tokenizer, p), list(g.token_ids)) for p, g in zip(prompts, generations, strict=True)
    ]
    total_kl, tokens = sequence_pass(ctx, sequences, advantage, normaliser=len(rewards))
    return StepStats(
        float(rewards.mean()), total_kl, tokens, sampled - started, scored - sampled, time.perf_counter() - scored
    )


def sequence_pass(
    ctx: StepContext, sequences: Sequence[tuple[list[int], list[int]]], weights: torch.Tensor, normaliser: int | None
) -> tuple[float, int]:
    """Backward of −Σ w·log π(y|x)/n + β·KL over completion tokens; returns (mean KL per token, tokens).

    `sequences` are this process's; n (`normaliser`, or the batch's completion-token count when
    None) and the KL's token count are the whole batch's, and the returned figures too.
    """
    (completion_tokens,) = ctx.world.sum(sum(len(c) for _, c in sequences))
    completion_tokens = completion_tokens or 1
    normaliser = normaliser or completion_tokens
    total_kl = 0.0
    tokens = 0
    for chunk in chunks(range(len(sequences)), ctx.config.micro_batch):
        ids, mask, positions, keep, completion_mask = continuation_batch([sequences[i] for i in chunk], ctx.pad_id)
        if keep == 1 and not ctx.sharded:  # sharded, the others run this forward too: take part with no tokens
            continue
        scored = continuation_scores(ctx.policy, ids, mask, positions, keep, completion_mask, kl=ctx.config.kl > 0)
        row_weights = weights[list(chunk)].to(scored.logp.device)
        loss = -(row_weights[scored.rows] * scored.logp).sum() / normaliser
        if scored.kl is not None:
            kl = scored.kl.sum()
            loss = loss + ctx.config.kl * kl / completion_tokens
            total_kl += float(kl.detach())
        loss.backward()
        tokens += int(mask.sum())
    total_kl, total_tokens = ctx.world.sum(total_kl, tokens)
    return total_kl / completion_tokens, int(total_tokens)


def nll_step(ctx: StepContext, examples: Sequence[Example]) -> StepStats:
    """The reference answers' next-token loss (every reference token weighs the same, as in SFT)."""
    started = time.perf_counter()
    sequences = []
    local = ctx.local(examples)
    for example, prompt in zip(local, ctx.prompts(local), strict=True):
        reference = ctx.task.reference_completion(example)
        if reference is None:
            raise BadInputError(
                f"task {ctx.task.name!r} has no reference answers; --method {ctx.config.method} needs them"
            )
        tail = ctx.loaded.tokenizer(reference, add_special_tokens=False)["input_ids"]
        if ctx.loaded.tokenizer.eos_token_id is not None:
            # Without the end-of-turn token the expert learns the answer but never learns to stop after it.
            tail = [*tail, ctx.loaded.tokenizer.eos_token_id]
        sequences.append((encode_prompt(ctx.loaded.tokenizer, prompt), tail))
    kl, tokens = sequence_pass(ctx, sequences, torch.ones(len(sequences)), normaliser=None)
    return StepStats(0.0, kl, tokens, grad_s=time.perf_counter() - started)


def chunks(indices: Sequence[int] | range, size: int) -> Iterator[list[int]]:
    indices = list(indices)
    for start in range(0, len(indices), size):
        yield indices[start : start + size]
