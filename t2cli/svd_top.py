"""The top k singular triplets of targeted matrices, reading only what a rank-k side path holds.

`t2 train --rank k` needs U_k, s_k and V_kᵀ of each target. The cache stores U row-major (m × r), so
its first k columns lie on every page of U: reading them, or probing the whole factorisation as
`load_cached` does, pulls all of U into memory (the full spectrum's size, per matrix). Here only s and
the first k rows of Vh are read (contiguous in the file), and U_k is rebuilt from the live weight:
W V_k = U_k diag(s_k) (V_k: the first k rows of Vᵀ, transposed), so U_k = W V_k / s_k, in fp64 —
the same formula the cache's U came from.
The check that the cache belongs to W costs nothing more: U_k built this way has orthonormal
columns only if (s_k, V_k) really are W's top singular pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from t2cli.errors import IntegrityError
from t2cli.models.loading import LoadedModel
from t2cli.svd import decompose, probe_tolerance, probe_weight
from t2cli.svd_cache import cache_path, map_cache
from t2cli.svf import Factors
from t2cli.targets import TargetMatrix


def top_factors(loaded: LoadedModel, targets: Sequence[TargetMatrix], rank: int) -> dict[str, Factors]:
    """U_k, s_k, V_kᵀ (k = min(rank, r)) of each target, on the CPU; decomposes first what the cache lacks."""
    path = cache_path(loaded.fingerprint)
    metadata, tensors = map_cache(path) if path.exists() else ({}, {})
    if any(f"{t.name}.Vh" not in tensors for t in targets) or metadata.get("fingerprint") != loaded.fingerprint:
        decompose(loaded, list(targets), resident=False)  # writes (or refuses) the cache, then read it again
        metadata, tensors = map_cache(path)
    found = {}
    for target in targets:
        k = min(rank, target.rank)
        S, Vh = tensors[f"{target.name}.S"][:k], tensors[f"{target.name}.Vh"][:k]
        if tuple(Vh.shape) != (k, target.shape[1]):
            raise IntegrityError(f"SVD cache {path} has the wrong shapes for {target.name}; run `t2 decompose --force`")
        weight = probe_weight(loaded, target.name).cpu()
        s = S.double()
        U = (weight.double() @ Vh.double().T) / torch.where(s > 0, s, torch.ones_like(s))
        drift = float((U.T @ U - torch.eye(k, dtype=torch.float64)).abs().max()) if k else 0.0
        if drift > probe_tolerance(Vh.dtype, weight.dtype):
            raise IntegrityError(
                f"SVD cache {path} does not reproduce {target.name} (tampered or stale); run `t2 decompose --force`"
            )
        found[target.name] = Factors(U.to(Vh.dtype), S.clone(), Vh.clone())
    return found
