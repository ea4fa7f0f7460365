"""Chunked scoring from hidden states: the numbers of full-vocabulary logits, on the hidden states' device."""

from __future__ import annotations

import pytest
import torch

from t2cli.training.logprobs import OutputHead, final_hidden, output_head, score_tokens
from tests.helpers import build_tiny_model


def _reference(head: OutputHead, hidden, base_hidden, targets, scored):
    """Today's formulation: B × T × vocab fp32 logits, log-softmax and KL over every position."""
    logp = torch.log_softmax(head.logits(hidden), -1)
    base = torch.log_softmax(head.logits(base_hidden), -1)
    token = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    kl = (logp.exp() * (logp - base)).sum(-1)
    return (token * scored).sum(-1), (kl * scored).sum()


@pytest.mark.parametrize("softcap", [None, 5.0])
def test_chunked_scores_and_gradients_equal_full_vocabulary_logits(softcap) -> None:
    generator = torch.Generator().manual_seed(0)
    head = OutputHead(torch.randn(50, 8, generator=generator), torch.randn(50, generator=generator), softcap)
    hidden = torch.randn(3, 7, 8, generator=generator, requires_grad=True)
    base_hidden = hidden.detach() + 0.1 * torch.randn(3, 7, 8, generator=generator)
    targets = torch.randint(0, 50, (3, 7), generator=generator)
    scored = (torch.rand(3, 7, generator=generator) > 0.3).float()
    weights = torch.tensor([0.5, -1.0, 2.0])

    rows, kl = _reference(head, hidden, base_hidden, targets, scored)
    (-(weights * rows).sum() + 0.3 * kl).backward()
    expected_grad, hidden.grad = hidden.grad.clone(), None

    scores = score_tokens(head, hidden, targets, scored, base_hidden, chunk=4)  # several chunks, one ragged
    assert int(scored.sum()) == len(scores.logp) > 4
    per_row = scores.per_row(scores.logp, 3)
    assert torch.allclose(per_row, rows, atol=1e-5)
    assert torch.allclose(scores.kl.sum(), kl, atol=1e-5)
    (-(weights[scores.rows] * scores.logp).sum() + 0.3 * scores.kl.sum()).backward()
    assert torch.allclose(hidden.grad, expected_grad, atol=1e-5)


def test_kl_is_zero_against_itself_and_nothing_scored_is_empty() -> None:
    head = OutputHead(torch.randn(20, 4))
    hidden = torch.randn(2, 3, 4)
    scores = score_tokens(head, hidden, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), hidden)
    assert torch.allclose(scores.kl, torch.zeros(6), atol=1e-6)
    empty = score_tokens(head, hidden, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), hidden)
    assert empty.logp.numel() == 0 and empty.kl.numel() == 0


def test_scores_are_computed_where_the_hidden_states_are(monkeypatch) -> None:
    """Masks and targets travel to the hidden states (a `meta` model here); no vocabulary-sized tensor comes back."""
    import torch.fx.experimental._config as fx_config

    # Every position is scored below, so the meta kernels may take the selection as all-true.
    monkeypatch.setattr(fx_config, "meta_nonzero_assume_all_nonzero", True)
    head = OutputHead(torch.empty(20, 4, device="meta"))
    hidden = torch.empty(2, 3, 4, device="meta", requires_grad=True)
    scores = score_tokens(head, hidden, torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), hidden.detach())
    assert scores.logp.device.type == scores.kl.device.type == "meta"


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_head_over_final_hidden_states_is_the_models_own_logits(model_type) -> None:
    model = build_tiny_model(model_type, seed=2, **({"final_logit_softcapping": 3.0} if model_type != "llama" else {}))
    ids = torch.tensor([[5, 9, 3, 7, 2], [0, 0, 8, 1, 6]])
    mask = (ids != 0).long()
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    expected = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=3).logits
    hidden = final_hidden(model, ids, mask, positions, keep=3, device="cpu")
    assert torch.allclose(output_head(model).logits(hidden), expected, atol=1e-5)
