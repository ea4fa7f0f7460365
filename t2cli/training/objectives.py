"""The training objectives: REINFORCE with a KL penalty to the base model, gradients to z only.

For a batch of prompts x and completions y sampled under the current z (no grad), with task
rewards r and advantages A = r − baseline:

    loss(z) = −mean(A · log π_z(y | x)) + β · KL(π_z ‖ π_base)

where log π_z(y|x) sums over y's tokens and the KL is taken over the vocabulary at every sampled
position. Gradients flow through the materialised W'(z) = W + U diag(s(z − 1)) Vh into z alone.

Rollouts:
- `generate`: free generation and the task's reward (any task);
- `choices`: for multiple-choice tasks, the policy is the model's next-token distribution over the
  choice letters. With a handful of answers the expected reward Σ_c π(c) r(c) is computed exactly
  — the REINFORCE gradient with every action enumerated, so no sampling noise;
- `likelihood`: the same exact gradient, each choice scored by its text's log-likelihood.

`nll` trains the same z on the reference answers' next-token loss (the paper's ablation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from t2cli.engines.base import left_pad
from t2cli.errors import BadInputError
from t2cli.tasks.base import Example, Task

if TYPE_CHECKING:
    pass
from t2cli.training.config import TrainConfig


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
