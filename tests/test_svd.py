from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from t2cli.errors import BadInputError, IntegrityError
from t2cli.svd import decompose, factorize, load_cached, relative_error, svd_gram
from t2cli.svd_cache import cache_path
from t2cli.svf import Factors
from tests.helpers import tamper_cache, tiny_loaded


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


def test_tampered_cache_is_refused(t2_home) -> None:
    loaded = tiny_loaded()
    path = decompose(loaded).path
    tamper_cache(path, loaded.targets[3].name)
    with pytest.raises(IntegrityError, match=r"does not reproduce .*k_proj|does not reproduce"):
        decompose(loaded)
    assert len(decompose(loaded, force=True).computed) == len(loaded.targets)


def test_a_caller_that_probes_itself_can_skip_the_probe(t2_home) -> None:
    loaded = tiny_loaded()
    path = decompose(loaded).path
    name = loaded.targets[3].name
    tamper_cache(path, name)
    # Fingerprint and shapes are still checked; the probe is left to the caller (vLLM's worker).
    assert name in load_cached(loaded, loaded.targets, probe=False)
    assert name in decompose(loaded, resident=False, probe=False).factors
    with pytest.raises(IntegrityError, match="does not reproduce"):
        load_cached(loaded, loaded.targets)


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


def test_streamed_cache_is_a_valid_safetensors_file(t2_home) -> None:
    from safetensors import safe_open

    loaded = tiny_loaded()
    result = decompose(loaded, loaded.select("attn"))
    decompose(loaded)  # the rest: old entries are copied into the new file beside the new ones
    with safe_open(str(result.path), framework="pt") as handle:
        assert handle.metadata()["fingerprint"] == loaded.fingerprint
        assert len(list(handle.keys())) == 3 * len(loaded.targets)
        name = loaded.targets[0].name
        factors = Factors(*(handle.get_tensor(f"{name}.{part}") for part in ("U", "S", "Vh")))
    assert relative_error(loaded.model.get_parameter(name), factors) < 1e-5


def test_a_bf16_cache_halves_the_file_and_reports_its_error(tmp_path, t2_home) -> None:
    loaded = tiny_loaded()
    exact = decompose(loaded, cache_dir=tmp_path / "fp32")
    rounded = decompose(loaded, cache_dir=tmp_path / "bf16", cache_dtype="bfloat16")
    assert exact.max_error < 1e-5 < rounded.max_error < 2e-2
    assert rounded.path.stat().st_size < 0.55 * exact.path.stat().st_size
    assert all(f.U.dtype == torch.bfloat16 for f in rounded.factors.values())
    # The bf16 cache is accepted on reload (its probe bound is the rounding's), and nothing is recomputed.
    assert decompose(loaded, cache_dir=tmp_path / "bf16", cache_dtype="bfloat16").computed == []
    with pytest.raises(BadInputError, match="unknown SVD cache dtype 'int8'"):
        decompose(loaded, cache_dtype="int8")


def test_factors_come_back_on_the_model_device_or_memory_mapped(t2_home) -> None:
    loaded = tiny_loaded()
    mapped = decompose(loaded, resident=False)
    resident = decompose(loaded)
    name = loaded.targets[0].name
    assert mapped.factors[name].U.device.type == resident.factors[name].U.device.type == "cpu"
    assert torch.equal(mapped.factors[name].U, resident.factors[name].U)


def test_decompose_command_reports_the_cache_dtype_error_and_size(tmp_path, t2_home) -> None:
    from typer.testing import CliRunner

    from t2cli.cli.app import app
    from tests.helpers import make_model_folder

    folder = str(make_model_folder(tmp_path / "tiny"))
    runner = CliRunner()
    result = runner.invoke(app, ["decompose", folder, "--cache-dtype", "bfloat16", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert 1e-5 < summary["max_reconstruction_error"] < 2e-2 and summary["computed"] == summary["matrices"]
    assert summary["cache_bytes"] == Path(summary["cache"]).stat().st_size
    bad = runner.invoke(app, ["decompose", "/nonexistent", "--cache-dtype", "fp8"])
    assert bad.exit_code == 2 and "unknown SVD cache dtype 'fp8'" in bad.stderr
