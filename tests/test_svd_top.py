"""Top-k factors from S and the first rows of Vh: the cache's own triplets, refused when they do not fit W."""

from __future__ import annotations

import pytest
import torch

from t2cli.errors import IntegrityError
from t2cli.svd import decompose
from t2cli.svd_top import top_factors
from tests.helpers import tiny_loaded


def test_top_factors_are_the_caches_first_k_triplets(t2_home) -> None:
    loaded = tiny_loaded("llama", seed=6)
    targets = loaded.select("all")
    full = decompose(loaded, targets).factors
    top = top_factors(loaded, targets, rank=4)
    for target in targets:
        f, t = full[target.name], top[target.name]
        assert t.U.shape == (target.shape[0], 4) and t.Vh.shape == (4, target.shape[1]) and t.S.shape == (4,)
        assert torch.equal(t.S, f.S[:4]) and torch.equal(t.Vh, f.Vh[:4])
        assert torch.allclose(t.U, f.U[:, :4], atol=1e-5)


def test_a_missing_cache_is_computed_and_a_stale_one_refused(t2_home) -> None:
    loaded = tiny_loaded("llama", seed=7)
    targets = loaded.select("q")
    assert set(top_factors(loaded, targets, rank=2)) == {t.name for t in targets}  # no cache before: decomposed
    with torch.no_grad():
        loaded.model.get_parameter(targets[0].name).add_(torch.randn(targets[0].shape))  # W moved under the cache
    with pytest.raises(IntegrityError, match="does not reproduce"):
        top_factors(loaded, targets, rank=2)
