"""Singular value decomposition of the target matrices, cached on disk per model fingerprint.

Each target W (m x n) is stored as U (m x r), S (r), Vh (r x n) with r = min(m, n) and
W ≈ U diag(S) Vh, in fp32 (or bf16/fp16 to halve the file, at a reported reconstruction error).
One safetensors file per fingerprint holds every target decomposed so far; loading memory-maps it,
so a cached model costs no SVD and little I/O. Decomposing streams: each matrix is read from the
checkpoint as stored, factorised on the chosen device, and written to the file before the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from t2cli.errors import BadInputError, IntegrityError
from t2cli.svd_cache import CACHE_FORMAT, cache_dtype_of, cache_path, map_cache, write_cache
from t2cli.svf import Factors
from t2cli.targets import TargetMatrix

if TYPE_CHECKING:
    from t2cli.models.loading import LoadedModel

# A factorisation is accepted when it reconstructs W to this relative Frobenius error; the Gram
# route must also keep its singular vectors orthonormal to ORTHOGONALITY_TOLERANCE.
RECONSTRUCTION_TOLERANCE = 1e-5
ORTHOGONALITY_TOLERANCE = 1e-4
# A cache is refused when a probe W x differs from U diag(S) Vh x by more than this (relative);
# factors or weights rounded to 16 bits miss by their rounding, a few 1e-3, and get a wider bound.
PROBE_TOLERANCE = 1e-3
_ROUNDED_TOLERANCE = {torch.float16: 5e-3, torch.bfloat16: 2e-2}
DRIVERS = ("gram", "gesdd")


def probe_tolerance(*dtypes: torch.dtype) -> float:
    """The probe bound for factors and weights held in these dtypes."""
    return max([PROBE_TOLERANCE] + [_ROUNDED_TOLERANCE.get(dtype, PROBE_TOLERANCE) for dtype in dtypes])


@dataclass
class Decomposition:
    """Factors for a set of targets of one model, plus where they came from."""

    fingerprint: str
    factors: dict[str, Factors]
    path: Path
    computed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Largest relative reconstruction error of the factors computed now, as stored (probe estimate).
    max_error: float = 0.0


def relative_error(weight: torch.Tensor, factors: Factors) -> float:
    rebuilt = (factors.U * factors.S) @ factors.Vh
    return float((rebuilt - weight).norm() / weight.norm().clamp_min(1e-30))


def svd_gesdd(weight: torch.Tensor) -> Factors:
    """LAPACK's divide-and-conquer SVD in fp32: the reference route."""
    U, S, Vh = torch.linalg.svd(weight.float(), full_matrices=False)
    return Factors(U.contiguous(), S.contiguous(), Vh.contiguous())


def svd_gram(weight: torch.Tensor) -> Factors:
    """SVD through the eigendecomposition of the smaller Gram matrix, in fp64.

    W^T W = V diag(S^2) V^T gives V and S; U = W V / S. fp64 keeps the squared spectrum exact
    enough for fp32 factors (the weights' smallest singular values sit ~1e-6 below the largest),
    and on CPU eigh plus two GEMMs run faster than gesdd once more than one thread is available.
    """
    w64 = weight.double()
    tall = w64.shape[0] >= w64.shape[1]
    gram = w64.T @ w64 if tall else w64 @ w64.T
    eigenvalues, vectors = torch.linalg.eigh(gram)
    S = eigenvalues.flip(0).clamp_min(0).sqrt()
    vectors = vectors.flip(1)
    safe = torch.where(S > 0, S, torch.ones_like(S))
    if tall:
        U, Vh = (w64 @ vectors) / safe, vectors.T
    else:
        U, Vh = vectors, ((w64.T @ vectors) / safe).T
    return Factors(U.float().contiguous(), S.float().contiguous(), Vh.float().contiguous())


def reconstruction_error(weight: torch.Tensor, factors: Factors, probes: int = 8) -> float:
    """Relative Frobenius error of U diag(S) Vh against W, estimated on random probe vectors.

    For Gaussian probes X, E‖(W − U diag(S) Vh) X‖² = ‖W − U diag(S) Vh‖²_F, so a thin GEMM
    estimates the error that a full product would cost as much as the SVD to compute.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(weight.shape[1], probes, generator=generator).to(weight.device)
    exact = weight.float() @ x
    rebuilt = factors.U.float() @ (factors.S.float()[:, None] * (factors.Vh.float() @ x))
    return float((rebuilt - exact).norm() / exact.norm().clamp_min(1e-30))


def _accurate(weight: torch.Tensor, factors: Factors, probes: int = 8) -> bool:
    """Reconstruction and orthonormality of fresh fp32 factors, checked on random probe vectors."""
    if reconstruction_error(weight, factors, probes) > RECONSTRUCTION_TOLERANCE:
        return False
    y = torch.randn(factors.S.shape[0], probes, generator=torch.Generator().manual_seed(1)).to(weight.device)
    for roundtrip in (factors.U.T @ (factors.U @ y), factors.Vh @ (factors.Vh.T @ y)):
        if float((roundtrip - y).norm() / y.norm()) > ORTHOGONALITY_TOLERANCE:
            return False
    return True


def check_driver(driver: str) -> str:
    if driver not in DRIVERS:
        raise BadInputError(f"unknown SVD driver {driver!r}; use one of {', '.join(DRIVERS)}")
    return driver


def factorize(weight: torch.Tensor, driver: str = "gram") -> Factors:
    """Exact fp32 factors of one matrix, computed on its device; the Gram route falls back to gesdd
    when it is not accurate enough."""
    check_driver(driver)
    weight = weight.detach().float()
    if driver == "gram":
        factors = svd_gram(weight)
        if _accurate(weight, factors):
            return factors
    return svd_gesdd(weight)


def probe_error(weight: torch.Tensor, factors: Factors, generator: torch.Generator) -> float:
    """Relative error of U diag(S) Vh x against W x for one random x: a cheap check that factors fit W."""
    x = torch.randn(weight.shape[1], generator=generator, dtype=torch.float32).to(weight.device)
    exact = weight.float() @ x
    rebuilt = factors.U.float() @ (factors.S.float() * (factors.Vh.float() @ x))
    return float((rebuilt - exact).norm() / exact.norm().clamp_min(1e-30))


def probe_weight(loaded: LoadedModel, name: str) -> torch.Tensor:
    """The weight a cache is checked against: the live parameter when the model is built (no read), else the file's."""
    if loaded.model is not None:
        return loaded.model.get_parameter(name).detach()
    return loaded.stored_weight(name)


def load_cached(
    loaded: LoadedModel, targets: Iterable[TargetMatrix], path: Path | None = None, *, probe: bool = True
) -> dict[str, Factors]:
    """The cached factors of these targets (those present, memory-mapped on the CPU), verified against the weights.

    The file must carry this model's fingerprint, the right shapes, and pass a random probe
    W x ≈ U diag(S) Vh x per matrix, so a cache edited by hand or written for other weights is
    refused instead of silently adapting the wrong basis. `probe=False` leaves the probe to a caller
    that runs it against the weights it computes with (vLLM's worker), instead of reading them twice.
    """
    path = path or cache_path(loaded.fingerprint)
    if not path.exists():
        return {}
    metadata, tensors = map_cache(path)
    if metadata.get("fingerprint") != loaded.fingerprint:
        raise IntegrityError(
            f"SVD cache {path} belongs to model fingerprint {metadata.get('fingerprint', '?')[:12]}, "
            f"not {loaded.fingerprint[:12]}; run `t2 decompose --force`"
        )
    generator = torch.Generator().manual_seed(0)
    found: dict[str, Factors] = {}
    for target in targets:
        keys = [f"{target.name}.{part}" for part in ("U", "S", "Vh")]
        if not all(key in tensors for key in keys):
            continue
        factors = Factors(*(tensors[key] for key in keys))
        m, n = target.shape
        r = target.rank
        if tuple(factors.U.shape) != (m, r) or tuple(factors.S.shape) != (r,) or tuple(factors.Vh.shape) != (r, n):
            raise IntegrityError(f"SVD cache {path} has the wrong shapes for {target.name}; run `t2 decompose --force`")
        if probe:
            weight = probe_weight(loaded, target.name).cpu()
            if probe_error(weight, factors, generator) > probe_tolerance(factors.U.dtype, weight.dtype):
                raise IntegrityError(
                    f"SVD cache {path} does not reproduce {target.name} (tampered or stale); run `t2 decompose --force`"
                )
        found[target.name] = factors
    return found


def decompose(
    loaded: LoadedModel,
    targets: list[TargetMatrix] | None = None,
    *,
    force: bool = False,
    driver: str = "gram",
    cache_dir: Path | None = None,
    on_matrix: Callable[[TargetMatrix], None] | None = None,
    device: str | None = None,
    cache_dtype: str = "float32",
    resident: bool = True,
    probe: bool = True,
) -> Decomposition:
    """Factors for the targets (default: all), computing only those the cache lacks.

    Each missing matrix is read from the checkpoint as stored, factorised on `device` (default: the
    model's) and written to the cache in `cache_dtype` before the next is read. The factors come
    back on the model's device (`resident`), or memory-mapped on the CPU for callers that only
    need them in the file. `probe`: as `load_cached`'s.
    """
    targets = loaded.targets if targets is None else targets
    stored = cache_dtype_of(cache_dtype)
    check_driver(driver)
    path = cache_path(loaded.fingerprint, cache_dir)
    cached = {} if force else load_cached(loaded, loaded.targets, path, probe=probe)
    wanted = {t.name for t in targets}
    missing = [t for t in targets if t.name not in cached]
    started = time.perf_counter()
    errors: list[float] = []

    def factors_of(target: TargetMatrix) -> Factors:
        if target.name in cached:
            return cached[target.name]
        weight = loaded.stored_weight(target.name).to(device or loaded.device)
        exact = factorize(weight, driver)
        rounded = Factors(*(t.to(stored) for t in (exact.U, exact.S, exact.Vh)))
        errors.append(reconstruction_error(weight, rounded))
        if on_matrix is not None:
            on_matrix(target)
        return rounded

    if on_matrix is not None:
        for target in targets:
            if target.name in cached:
                on_matrix(target)
    if missing:
        by_name = {t.name: t for t in loaded.targets} | {t.name: t for t in targets}
        plan = [(by_name[name], f.S.dtype) for name, f in cached.items()] + [(t, stored) for t in missing]
        metadata = {"fingerprint": loaded.fingerprint, "model_id": loaded.model_id, "format": str(CACHE_FORMAT)}
        write_cache(path, metadata, plan, factors_of)
        cached = load_cached(loaded, targets, path, probe=probe)
    seconds = time.perf_counter() - started
    factors = {name: f for name, f in cached.items() if name in wanted}
    if resident:
        factors = {
            name: Factors(f.U.to(loaded.device), f.S.to(loaded.device), f.Vh.to(loaded.device))
            for name, f in factors.items()
        }
    return Decomposition(
        fingerprint=loaded.fingerprint,
        factors=factors,
        path=path,
        computed=[t.name for t in missing],
        seconds=seconds,
        max_error=max(errors, default=0.0),
    )


@dataclass(frozen=True)
class DecomposeSummary:
    """What `t2 decompose` reports: sizes of the SVF parametrisation next to LoRA's."""

    model_id: str
    fingerprint: str
    matrices: int
    ranks: dict[str, int]
    z_parameters: int
    lora_r16_parameters: int
    computed: int
    seconds: float
    cache: str
    cache_bytes: int
    max_reconstruction_error: float


def lora_parameters(targets: Iterable[TargetMatrix], rank: int = 16) -> int:
    """Trainable parameters of a rank-r LoRA on the same matrices: r (m + n) each."""
    return sum(rank * (t.shape[0] + t.shape[1]) for t in targets)


def summarize(loaded: LoadedModel, targets: list[TargetMatrix], decomposition: Decomposition) -> DecomposeSummary:
    ranks: dict[str, int] = {}
    for target in targets:
        ranks.setdefault(target.role, target.rank)
    return DecomposeSummary(
        model_id=loaded.model_id,
        fingerprint=loaded.fingerprint,
        matrices=len(targets),
        ranks=ranks,
        z_parameters=sum(t.rank for t in targets),
        lora_r16_parameters=lora_parameters(targets),
        computed=len(decomposition.computed),
        seconds=round(decomposition.seconds, 3),
        cache=str(decomposition.path),
        cache_bytes=decomposition.path.stat().st_size,
        max_reconstruction_error=decomposition.max_error,
    )
