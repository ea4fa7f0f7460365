from __future__ import annotations

import json
import shutil

import pytest
import torch

from t2cli.errors import BadInputError, IntegrityError
from t2cli.svd import cache_path, decompose, factorize, load_cached, relative_error, svd_gram
from tests.helpers import tiny_loaded


@pytest.mark.parametrize("driver", ["gram", "gesdd"])
@pytest.mark.parametrize("shape", [(48, 32), (32, 48), (32, 32)])
def test_factors_reconstruct_and_are_orthonormal(driver: str, shape: tuple[int, int]) -> None:
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    factors = factorize(weight, driver)
    r = min(shape)
    assert factors.U.shape == (shape[0], r) and factors.S.shape == (r,) and factors.Vh.shape == (r, shape[1])
    assert relative_error(weight, factors) < 1e-5
    assert torch.allclose(factors.U.T @ factors.U, torch.eye(r), atol=1e-4)
    assert torch.allclose(factors.Vh @ factors.Vh.T, torch.eye(r), atol=1e-4)
    assert torch.all(factors.S[:-1] >= factors.S[1:])


def test_gram_route_matches_lapack_spectrum_on_ill_conditioned_matrix() -> None:
    generator = torch.Generator().manual_seed(2)
    q1, _ = torch.linalg.qr(torch.randn(64, 64, generator=generator))
    q2, _ = torch.linalg.qr(torch.randn(40, 40, generator=generator))
    spectrum = torch.logspace(0, -6, 40)
    weight = q1[:, :40] @ torch.diag(spectrum) @ q2.T
    factors = factorize(weight, "gram")
    assert torch.allclose(factors.S, spectrum, rtol=1e-3, atol=1e-7)
    assert relative_error(weight, factors) < 1e-5
    # Without the verification fallback, fp64 Gram still meets the tolerance on this spectrum.
    assert relative_error(weight, svd_gram(weight)) < 1e-5


def test_unknown_driver_is_refused() -> None:
    with pytest.raises(BadInputError, match="unknown SVD driver"):
        factorize(torch.eye(3), "jacobi")


def test_second_call_reuses_the_cache(t2_home) -> None:
    loaded = tiny_loaded()
    first = decompose(loaded)
    assert len(first.computed) == len(loaded.targets) and first.path.exists()
    second = decompose(loaded)
    assert second.computed == []
    for name, factors in first.factors.items():
        assert torch.equal(second.factors[name].U, factors.U)
        assert torch.equal(second.factors[name].S, factors.S)
    assert decompose(loaded, force=True).computed == [t.name for t in loaded.targets]


def test_a_subset_then_the_rest_are_added_to_the_same_file(t2_home) -> None:
    loaded = tiny_loaded()
    mlp = loaded.select("mlp")
    assert len(decompose(loaded, mlp).computed) == len(mlp)
    every = decompose(loaded)
    assert len(every.computed) == len(loaded.targets) - len(mlp)
    assert set(load_cached(loaded, loaded.targets)) == {t.name for t in loaded.targets}


def test_cache_is_memory_mapped_views_of_the_file(t2_home) -> None:
    loaded = tiny_loaded()
    decompose(loaded)
    factors = load_cached(loaded, loaded.targets)
    any_factor = next(iter(factors.values()))
    # Views on one shared file buffer, not per-tensor copies.
    assert any_factor.U.untyped_storage().nbytes() == cache_path(loaded.fingerprint).stat().st_size


def _tamper(path, name: str) -> None:
    """Flip one value of a stored U tensor in place, as an edited or bit-rotted file would."""
    raw = bytearray(path.read_bytes())
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    start, _ = header[f"{name}.U"]["data_offsets"]
    offset = 8 + size + start
    value = torch.frombuffer(raw[offset : offset + 4], dtype=torch.float32).item()
    raw[offset : offset + 4] = torch.tensor([value + 10.0]).numpy().tobytes()
    path.write_bytes(bytes(raw))


def test_tampered_cache_is_refused(t2_home) -> None:
    loaded = tiny_loaded()
    path = decompose(loaded).path
    _tamper(path, loaded.targets[3].name)
    with pytest.raises(IntegrityError, match=r"does not reproduce .*k_proj|does not reproduce"):
        decompose(loaded)
    assert len(decompose(loaded, force=True).computed) == len(loaded.targets)


def test_truncated_cache_is_refused(t2_home) -> None:
    loaded = tiny_loaded()
    path = decompose(loaded).path
    path.write_bytes(path.read_bytes()[:4])
    with pytest.raises(IntegrityError, match="truncated"):
        decompose(loaded)


def test_cache_of_another_model_is_refused(t2_home) -> None:
    loaded = tiny_loaded(seed=0)
    other = tiny_loaded(seed=1)
    source = decompose(other).path
    shutil.copyfile(source, cache_path(loaded.fingerprint))
    with pytest.raises(IntegrityError, match="belongs to model fingerprint"):
        decompose(loaded)
