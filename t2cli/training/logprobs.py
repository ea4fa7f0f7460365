"""Token log-probabilities and the KL to the base, from final hidden states, a chunk of positions at a time.

The objectives need, at each scored position, log π(y_t) and KL(π ‖ π_base) over the whole vocabulary.
Computing them from a B × T × vocab fp32 logits tensor (and its log-softmax, and the base's) is what
made a 135M model's step peak at 13–19 GB. Here the policy hands over final hidden states (B × T × h);
only the scored positions are gathered, and the head, log-softmax and KL run on `CHUNK_TOKENS` of them
at a time under activation checkpointing, so no more than one chunk's vocabulary-sized tensors exist at
once, forward or backward. Everything runs on the hidden states' device: masks and targets go there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

# Positions whose vocabulary-sized rows exist at once: 256 × 49,152 fp32 is 50 MB a tensor.
CHUNK_TOKENS = 256


@dataclass(frozen=True)
class OutputHead:
    """The model's LM head (weight vocab × h, optional bias, optional final soft-capping)."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    softcap: float | None = None

    def logits(self, hidden: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 logits of `hidden` (…, h) over the vocabulary, or over the token ids `rows` only."""
        weight = self.weight if rows is None else self.weight[rows]
        bias = self.bias if self.bias is None or rows is None else self.bias[rows]
        logits = torch.nn.functional.linear(hidden.to(weight.dtype), weight, bias).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def output_head(model: torch.nn.Module) -> OutputHead:
    layer = model.get_output_embeddings()
    config = getattr(model, "config", None)
    return OutputHead(layer.weight, getattr(layer, "bias", None), getattr(config, "final_logit_softcapping", None))


def final_hidden(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    keep: int,
    device: torch.device | str,
) -> torch.Tensor:
    """The decoder's final (normalised) hidden states at the last `keep` positions, on `device`."""
    out = model.get_decoder()(
        input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), use_cache=False
    )
    return out.last_hidden_state[:, -keep:]


@dataclass
class TokenScores:
    """Per scored position (flattened, row-major): log π(token), KL(π ‖ π_base) (if asked), and its row."""

    logp: torch.Tensor
    kl: torch.Tensor | None
    rows: torch.Tensor

    def per_row(self, values: torch.Tensor, count: int) -> torch.Tensor:
        """Sum `values` (one per scored position) within each of `count` rows."""
        return torch.zeros(count, dtype=values.dtype, device=values.device).index_add(0, self.rows, values)


def score_tokens(
    head: OutputHead,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    scored: torch.Tensor,
    base_hidden: torch.Tensor | None = None,
    chunk: int = CHUNK_TOKENS,
) -> TokenScores:
    """log π(targets) (and KL to the base where `base_hidden` is given) where `scored` is nonzero.

    hidden, base_hidden: (B, T, h); targets, scored: (B, T), hidden[:, t] predicting targets[:, t].
    """
    device = hidden.device
    select = scored.to(device) != 0
    rows = select.nonzero()[:, 0]
    states, tokens = hidden[select], targets.to(device)[select]
    base = base_hidden.to(device)[select].detach() if base_hidden is not None else None
    logps, kls = [], []
    for start in range(0, len(tokens), chunk):
        piece = slice(start, start + chunk)
        args = (states[piece], tokens[piece], None if base is None else base[piece])
        logp, kl = (
            checkpoint(_chunk_scores, head, *args, use_reentrant=False)
            if states.requires_grad
            else (_chunk_scores(head, *args))
        )
        logps.append(logp)
        kls.append(kl)
    empty = hidden.new_zeros(0, dtype=torch.float32)
    logp = torch.cat(logps) if logps else empty
    kl = None if base is None else (torch.cat(kls) if kls else empty)
    return TokenScores(logp, kl, rows)


def _chunk_scores(
    head: OutputHead, states: torch.Tensor, tokens: torch.Tensor, base: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    logp = torch.log_softmax(head.logits(states), dim=-1)
    token_logp = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    if base is None:
        return token_logp, None
    with torch.no_grad():
        base_logp = torch.log_softmax(head.logits(base), dim=-1)
    return token_logp, (logp.exp() * (logp - base_logp)).sum(-1)
