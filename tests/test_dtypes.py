"""--device / --dtype resolution, and experts that move between fp32 and bf16 loads of one checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.device import check_device, check_dtype, resolve_placement
from t2cli.errors import BadInputError
from t2cli.models.fingerprint import fingerprint
from t2cli.models.loading import load_model
from t2cli.svd import decompose, reconstruction_error
from tests.helpers import build_tiny_model, make_model_folder, make_task, tiny_tokenizer


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend torch sees `count` CUDA GPUs."""

    def set_count(count: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    monkeypatch.delenv("T2_DEVICE", raising=False)
    monkeypatch.delenv("T2_DTYPE", raising=False)
    return set_count


def test_auto_is_cuda_bf16_with_a_gpu_and_cpu_fp32_without(gpus) -> None:
    gpus(0)
    assert resolve_placement() == resolve_placement("auto", "auto")
    place = resolve_placement()
    assert (place.device, place.dtype, place.torch_dtype) == ("cpu", "float32", torch.float32)
    gpus(2)
    assert (resolve_placement().device, resolve_placement().dtype) == ("cuda:0", "bfloat16")
    assert (resolve_placement("cuda:1", "float32").device, resolve_placement("cuda:1", "fp32").dtype) == (
        "cuda:1",
        "float32",
    )
    assert resolve_placement("cpu").dtype == "float32"  # auto dtype follows the device, not the machine
    assert resolve_placement("cpu", "bf16").torch_dtype == torch.bfloat16


def test_environment_fills_in_and_flags_win(gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(1)
    monkeypatch.setenv("T2_DEVICE", "cpu")
    monkeypatch.setenv("T2_DTYPE", "float16")
    assert (resolve_placement().device, resolve_placement().dtype) == ("cpu", "float16")
    assert (resolve_placement("cuda", "bfloat16").device, resolve_placement("cuda", "bfloat16").dtype) == (
        "cuda:0",
        "bfloat16",
    )


def test_devices_this_machine_lacks_and_bad_spellings_are_refused(gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(0)
    with pytest.raises(BadInputError, match="torch sees no CUDA GPU"):
        resolve_placement("cuda")
    gpus(2)
    with pytest.raises(BadInputError, match="'cuda:2' does not exist: 2 CUDA GPU"):
        resolve_placement("cuda:2")
    with pytest.raises(BadInputError, match="--device 'gpu' is not a device"):
        check_device("gpu")
    with pytest.raises(BadInputError, match="--dtype 'int8' is not a dtype"):
        check_dtype("int8")
    monkeypatch.setenv("T2_DTYPE", "fp8")
    with pytest.raises(BadInputError, match=r"\$T2_DTYPE 'fp8' is not a dtype"):
        resolve_placement()


def test_cli_refuses_bad_values_in_one_line_before_loading(tmp_path: Path, gpus) -> None:
    gpus(0)
    runner = CliRunner()
    missing = str(tmp_path / "no-such-model")  # would exit 3 if the model were looked for first
    result = runner.invoke(app, ["--device", "tpu", "decompose", missing])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "--device 'tpu' is not a device" in result.stderr
    result = runner.invoke(app, ["--device", "cuda", "decompose", missing])
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr
    result = runner.invoke(app, ["decompose", missing], env={"T2_DTYPE": "double"})
    assert result.exit_code == 2 and "$T2_DTYPE 'double'" in result.stderr


def save_checkpoint(folder: Path, *, seed: int = 5, dtype: torch.dtype = torch.float32) -> Path:
    model = build_tiny_model("llama", seed=seed, initializer_range=0.3).to(dtype)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def test_fingerprint_names_the_stored_weights_not_the_load_dtype(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    fp32 = load_model(str(folder))
    bf16 = load_model(str(folder), dtype=torch.bfloat16)
    files_only = load_model(str(folder), weights=False)
    assert bf16.model.dtype == torch.bfloat16 and files_only.model is None
    assert fp32.fingerprint == bf16.fingerprint == files_only.fingerprint
    assert files_only.targets == fp32.targets
    # An fp32 checkpoint keeps the fingerprint of the old rule (hashing the loaded fp32 tensors).
    assert fp32.fingerprint == fingerprint(fp32.model, fp32.targets)
    assert fingerprint(bf16.model, bf16.targets) != bf16.fingerprint  # what hashing the bf16 load would give
    other = load_model(str(save_checkpoint(tmp_path / "other", seed=6)), dtype=torch.bfloat16)
    assert other.fingerprint != fp32.fingerprint


def test_a_bf16_checkpoint_has_one_fingerprint_in_every_load(tmp_path: Path) -> None:
    folder = save_checkpoint(tmp_path / "tiny-bf16", dtype=torch.bfloat16)
    loads = [load_model(str(folder), dtype=dtype) for dtype in (torch.float32, torch.bfloat16, torch.float16)]
    assert len({loaded.fingerprint for loaded in loads}) == 1
    # Widening bf16 to fp32 is exact, so the in-memory rule (fp32 values) agrees with the files.
    assert fingerprint(loads[0].model, loads[0].targets) == loads[0].fingerprint


def test_svd_of_a_bf16_load_is_the_svd_of_the_stored_fp32_weights(tmp_path: Path, t2_home: Path) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    bf16 = load_model(str(folder), dtype=torch.bfloat16)
    result = decompose(bf16, bf16.select("mlp"))
    stored = bf16.stored_weight(result.computed[0])
    assert stored.dtype == torch.float32
    factors = result.factors[result.computed[0]]
    assert reconstruction_error(stored, factors) < 1e-5
    assert result.max_error < 1e-5
    # The fp32 load finds the same cache file (keyed by fingerprint) and accepts it.
    fp32 = load_model(str(folder))
    again = decompose(fp32, fp32.select("mlp"))
    assert again.computed == [] and again.path == result.path


def test_an_expert_trained_in_bf16_serves_on_an_fp32_load_and_not_on_another_checkpoint(
    tmp_path: Path, t2_home: Path
) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    spec = make_task(tmp_path)
    registry = tmp_path / "registry"
    runner = CliRunner()
    common = ["--task", str(spec), "--registry", str(registry)]
    train = [
        "--dtype", "bfloat16", "train", *common, "--model", str(folder), "--steps", "1", "--batch-size", "2",
        "--samples", "2", "--max-new-tokens", "2", "--val-every", "1", "--val-limit", "2", "-o", "first", "--json",
    ]  # fmt: skip
    trained = runner.invoke(app, train)
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["expert"] == "first@1" and summary["peak_memory_mb"] > 0
    log = (t2_home / "runs" / "tiny" / "first" / "log.jsonl").read_text().splitlines()
    assert json.loads(log[0])["peak_memory_mb"] > 0
    evaluate = ["eval", *common, "--split", "train", "--limit", "2", "--max-new-tokens", "2", "-e", "first", "--json"]
    served = runner.invoke(app, ["--dtype", "float32", *evaluate, "--model", str(folder)])
    assert served.exit_code == 0, served.output
    assert "first@1" in served.stdout
    # A different checkpoint under the same folder name (so the same registry slot) is refused.
    other = save_checkpoint(tmp_path / "elsewhere" / "tiny", seed=6)
    refused = runner.invoke(app, ["--dtype", "float32", *evaluate, "--model", str(other)])
    assert refused.exit_code == 4 and "fingerprint" in refused.stderr


def test_launched_processes_take_one_gpu_each_and_join_with_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    from t2cli.training.distributed import launched_world

    chosen: list[object] = []
    backends: list[str] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, init_method: backends.append(backend))
    monkeypatch.setattr(dist, "barrier", lambda: None)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: None)
    monkeypatch.setattr(dist, "get_rank", lambda: 3)
    monkeypatch.setattr(dist, "get_world_size", lambda: 4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with launched_world("cuda:0") as world:  # what --device auto resolves to on a GPU node
        assert (world.rank, world.size, world.device) == (3, 4, "cuda:1")
    assert backends == ["nccl"] and chosen == [torch.device("cuda", 1)]
    with launched_world("cpu") as world:
        assert world.device == "cpu"
    assert backends == ["nccl", "gloo"]
    monkeypatch.setenv("WORLD_SIZE", "1")
    with launched_world("cuda:0") as world:  # one process keeps the GPU it was given
        assert (world.size, world.device) == (1, "cuda:0")


def test_the_vllm_driver_works_from_the_checkpoint_files_alone(
    tmp_path: Path, t2_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    from t2cli.svd import load_cached
    from tests.engines.test_vllm import recording_driver

    folder = make_model_folder(tmp_path / "tiny")
    full = load_model(str(folder))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the driver built a transformers model")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    files_only = load_model(str(folder), dtype=torch.bfloat16, weights=False)
    assert files_only.fingerprint == full.fingerprint and files_only.targets == full.targets
    engine = recording_driver(files_only)
    z = {t.name: torch.full((t.rank,), 1.1) for t in files_only.select("mlp")}
    engine.set_expert(z)
    (method, (cache, names)), _ = engine.llm.calls
    assert method == "t2_prepare" and names == sorted(z)
    # The factors were computed from the files and pass the probe against the full model's weights.
    assert set(load_cached(full, full.select("mlp"), Path(cache))) == set(z)


def test_free_memory_is_the_hosts_available_memory_on_the_cpu_and_unknown_elsewhere(tmp_path, monkeypatch) -> None:
    from t2cli import device

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    monkeypatch.setattr(device, "_MEMINFO", meminfo)
    assert device.free_memory_bytes("cpu") == 20000000 * 1024
    assert device.free_memory_bytes("mps") is None
    monkeypatch.setattr(device, "_MEMINFO", tmp_path / "absent")
    assert device.free_memory_bytes("cpu") is None
