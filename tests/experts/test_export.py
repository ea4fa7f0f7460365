"""`t2 export`: rank selection on planted spectra, PEFT folders that load and match, merged checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.errors import BadInputError
from t2cli.experts.export import expert_factors, export_expert, load_export, lora_equivalent_z
from t2cli.experts.fidelity import kept_components, plan_ranks, rank_for_energy
from t2cli.experts.registry import Registry
from t2cli.models.loading import load_model
from t2cli.svf import LiveAdapter, weight_delta
from tests.helpers import make_model_folder, publish_expert

PLANTED = torch.tensor([0.0, 3.0, -0.5, -4.0, 1.0, 0.0])  # squares 0, 9, .25, 16, 1, 0: total 26.25


def test_kept_components_are_the_largest_in_magnitude() -> None:
    assert kept_components(PLANTED, 3).tolist() == [3, 1, 4]
    assert kept_components(PLANTED, 99).numel() == 6


@pytest.mark.parametrize(
    ("energy", "rank"), [(16 / 26.25, 1), (0.9, 2), (25 / 26.25, 2), (0.99, 3), (0.995, 4), (1.0, 4)]
)
def test_energy_picks_the_smallest_rank_that_holds_it(energy: float, rank: int) -> None:
    assert rank_for_energy(PLANTED, energy) == rank


def test_plan_ranks_caps_at_each_matrix_and_needs_one_budget() -> None:
    changes = {"a": PLANTED, "b": torch.zeros(3)}
    assert plan_ranks(changes, rank=4, energy=None) == {"a": 4, "b": 3}
    assert plan_ranks(changes, rank=None, energy=0.5) == {"a": 1, "b": 1}  # a zero change still needs r >= 1
    for rank, energy in [(2, 0.5), (None, None), (0, None), (None, 0.0), (None, 1.5)]:
        with pytest.raises(BadInputError):
            plan_ranks(changes, rank=rank, energy=energy)


@pytest.fixture
def setup(tmp_path: Path, t2_home: Path):
    """A tiny model saved as a folder (as `t2 export` loads it) and a noisy expert on its MLP matrices."""
    folder = make_model_folder(tmp_path / "model")
    loaded = load_model(str(folder))
    registry = Registry(tmp_path / "registry")
    ref = publish_expert(registry, loaded, "arc", "arc", z=1.0, noise_seed=3)
    return loaded, registry, ref


def adapted_logits(loaded, expert, factors, ids: torch.Tensor) -> torch.Tensor:
    adapter = LiveAdapter(loaded.model, factors, expert.manifest.svf_rule)
    adapter.apply(expert.z)
    try:
        return loaded.model(input_ids=ids).logits
    finally:
        adapter.restore()


IDS = torch.tensor([[61, 7, 4, 19, 36, 2, 11, 0]])


@torch.inference_mode()
def test_full_rank_lora_is_exact_and_loads_in_peft(setup, tmp_path: Path) -> None:
    loaded, _, ref = setup
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    out = tmp_path / "lora"
    result = export_expert(loaded, expert, factors, ref.path, out, "peft-lora", rank=10_000)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "t2_export.json",
    ]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 32 and set(config["target_modules"]) == {
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert config["rank_pattern"] == {}  # every MLP matrix of the tiny model has rank 32
    assert result.report.overall().energy == pytest.approx(1.0) and result.report.overall().max_error < 1e-6
    peft_model = load_export(loaded, out, "peft-lora").model
    keys = {k for k in peft_model.state_dict() if "lora_A" in k}
    assert "base_model.model.model.layers.0.mlp.down_proj.lora_A.default.weight" in keys
    assert torch.allclose(peft_model(input_ids=IDS).logits, adapted_logits(loaded, expert, factors, IDS), atol=1e-5)


@torch.inference_mode()
def test_truncated_lora_has_the_reported_weight_error(setup, tmp_path: Path) -> None:
    loaded, _, ref = setup
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    result = export_expert(loaded, expert, factors, ref.path, tmp_path / "lora", "peft-lora", energy=0.6)
    peft_model = load_export(loaded, tmp_path / "lora", "peft-lora").model
    params = dict(loaded.model.named_parameters())
    for m in result.report.matrices:
        module = peft_model.get_submodule(f"base_model.model.{m.name.removesuffix('.weight')}")
        assert module.r["default"] == m.rank and module.scaling["default"] == 1.0
        exported = params[m.name] + module.get_delta_weight("default")
        adapted = params[m.name] + weight_delta(factors[m.name], expert.z[m.name])
        error = float((exported - adapted).norm() / adapted.norm())
        assert error == pytest.approx(m.error, rel=1e-3, abs=1e-6)
    overall = result.report.overall()
    assert 0.6 <= overall.energy < 1 and overall.min_rank < overall.max_rank
    # Less than the whole change, so the logits move off the exact ones, but not far.
    exact = adapted_logits(loaded, expert, factors, IDS)
    base = loaded.model(input_ids=IDS).logits
    gap = (peft_model(input_ids=IDS).logits - exact).norm()
    assert 0 < gap < (base - exact).norm()


@torch.inference_mode()
def test_merged_checkpoint_loads_with_plain_transformers(setup, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    loaded, _, ref = setup
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    before = loaded.model(input_ids=IDS).logits
    export_expert(loaded, expert, factors, ref.path, tmp_path / "merged", "merged")
    assert torch.equal(loaded.model(input_ids=IDS).logits, before)  # the live model is back on its base weights
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32).eval()
    assert torch.allclose(merged(input_ids=IDS).logits, adapted_logits(loaded, expert, factors, IDS), atol=1e-5)


def t2(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (["--rank", "8", "--energy", "0.9"], "not both"),
        (["--energy", "1.5"], "(0, 1]"),
        (["--energy", "0"], "(0, 1]"),
        (["--rank", "0"], ">= 1"),
        ([], "--rank K or --energy E"),
        (["--format", "gguf"], "unknown export format"),
    ],
)
def test_bad_flags_exit_2_before_any_model_loads(setup, tmp_path: Path, monkeypatch, flags, text) -> None:
    _, registry, _ = setup
    monkeypatch.setattr("t2cli.models.loading.load_model", lambda *a, **k: pytest.fail("loaded a model"))
    fmt = [] if "--format" in flags else ["--format", "peft-lora"]
    code, out, err = t2("export", "arc", *fmt, *flags, "-o", str(tmp_path / "x"), "--registry", str(registry.root))
    assert (code, out) == (2, "") and err.startswith("error: ") and err.count("\n") == 1 and text in err


def test_existing_folder_with_files_is_refused(setup, tmp_path: Path) -> None:
    _, registry, _ = setup
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, _, err = t2("export", "arc", "-f", "merged", "-o", str(taken), "--registry", str(registry.root))
    assert code == 2 and "not an empty folder" in err and (taken / "keep.txt").read_text() == "mine"


def test_cli_exports_and_reports_json(setup, tmp_path: Path) -> None:
    loaded, registry, _ = setup
    args = ["export", "arc", "-f", "peft-lora", "--rank", "4", "-o", str(tmp_path / "empty"), "--json"]
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    code, out, err = t2(*args, "--model", loaded.source, "--registry", str(registry.root))
    assert code == 0, err
    payload = json.loads(out)
    assert payload["format"] == "peft-lora" and payload["fidelity"]["overall"]["max_rank"] == 4
    assert {r["label"] for r in payload["fidelity"]["roles"]} == {"gate", "up", "down"}


@torch.inference_mode()
def test_lora_expert_is_copied_as_trained_and_merges(setup, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from t2cli.experts.files import Expert
    from t2cli.experts.lora import ADAPTER_FILES, adapter_provenance, load_lora_adapter
    from t2cli.experts.manifest import new_manifest
    from t2cli.models.loading import shared_copy
    from tests.helpers import TRAINED

    loaded, registry, _ = setup
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(shared_copy(loaded.model), config).save_pretrained(str(tmp_path / "adapter"))
    targets = loaded.select("mlp")
    manifest = new_manifest(
        name="arc-lora", base_model=loaded.model_id, base_fingerprint=loaded.fingerprint, targets=targets,
        provenance={**TRAINED, "task": "arc", "adapter": adapter_provenance(2)}, task="arc", description="lora",
    )  # fmt: skip
    z = {t.name: torch.ones(t.rank) for t in targets}  # a LoRA expert's z is the identity
    ref = registry.publish(
        Expert(manifest, z), extra_files={name: tmp_path / "adapter" / name for name in ADAPTER_FILES}
    )
    expert = ref.load(loaded.fingerprint)
    result = export_expert(loaded, expert, {}, ref.path, tmp_path / "out", "peft-lora")
    assert result.report is None
    for name in ADAPTER_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (ref.path / name).read_bytes()
    export_expert(loaded, expert, {}, ref.path, tmp_path / "merged", "merged")
    merged = load_model(str(tmp_path / "merged")).model
    adapted = load_lora_adapter(loaded.model, ref.path, fingerprint=loaded.fingerprint)
    assert torch.allclose(merged(input_ids=IDS).logits, adapted(input_ids=IDS).logits, atol=1e-5)
    assert not torch.allclose(merged(input_ids=IDS).logits, loaded.model(input_ids=IDS).logits, atol=1e-3)


def test_fidelity_curve_agrees_with_the_export_report_and_plots(setup, tmp_path: Path) -> None:
    from t2cli.experts.export import expert_spectra, lora_factors
    from t2cli.experts.fidelity import fidelity_curve

    loaded, registry, ref = setup
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    curve = fidelity_curve(expert_spectra(expert, factors), [1, 4, 32, 40])
    for rank, energy, error in zip(curve.ranks, curve.energy, curve.max_error, strict=True):
        overall = lora_factors(expert, factors, rank=rank).report.overall()
        assert energy == pytest.approx(overall.energy) and error == pytest.approx(overall.max_error, abs=1e-7)
    assert curve.energy[-1] == pytest.approx(1.0) and curve.energy == sorted(curve.energy)
    plot = tmp_path / "fidelity.png"
    args = ["export", "arc", "-f", "peft-lora", "--rank", "4", "-o", str(tmp_path / "o"), "--plot", str(plot)]
    code, _, err = t2("--quiet", *args, "--model", loaded.source, "--registry", str(registry.root))
    assert code == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spectrum_change_follows_the_factors_device() -> None:
    """On a GPU the cached factors live on the device and an expert's z on the CPU (a bug found on the H100:
    `t2 run --lora-rank` failed there); the meta device stands in for the GPU here."""
    from t2cli.experts.fidelity import spectrum_change
    from t2cli.svf import Factors

    factors = Factors(
        U=torch.ones(3, 2, device="meta"), S=torch.ones(2, device="meta"), Vh=torch.ones(2, 3, device="meta")
    )
    change, adapted = spectrum_change(factors, torch.full((2,), 1.5, dtype=torch.float64), "none")
    assert change.device.type == adapted.device.type == "meta" and adapted.dtype == torch.float32


@torch.inference_mode()
@pytest.mark.parametrize("budget", [{"rank": 3}, {"energy": 0.6}])
def test_lora_export_equals_its_equivalent_z(setup, tmp_path: Path, budget) -> None:
    loaded, _, ref = setup
    expert = ref.load(loaded.fingerprint)
    factors = expert_factors(loaded, expert)
    export_expert(loaded, expert, factors, ref.path, tmp_path / "lora", "peft-lora", **budget)
    peft_logits = load_export(loaded, tmp_path / "lora", "peft-lora").model(input_ids=IDS).logits
    z = lora_equivalent_z(expert, factors, **budget)
    assert set(z) == set(expert.z) and all(z[n].shape == expert.z[n].shape for n in z)
    adapter = LiveAdapter(loaded.model, factors, "none")
    adapter.apply(z)
    try:
        equivalent = loaded.model(input_ids=IDS).logits
    finally:
        adapter.restore()
    assert torch.allclose(peft_logits, equivalent, atol=1e-5)
    assert not torch.allclose(equivalent, adapted_logits(loaded, expert, factors, IDS), atol=1e-4)


def test_an_expert_trained_at_rank_r_exports_exactly_at_r_by_default(setup, tmp_path: Path) -> None:
    from dataclasses import replace

    from t2cli.experts.files import Expert

    loaded, registry, ref = setup
    expert = ref.load(loaded.fingerprint)
    # What `t2 train --rank 3` publishes: z moves only the 3 largest singular values of each matrix.
    z = {name: torch.cat([vector[:3], torch.ones(vector.numel() - 3)]) for name, vector in expert.z.items()}
    hyperparameters = {"rank": 3, "method": "nll"}
    provenance = {**expert.manifest.provenance, "hyperparameters": hyperparameters}
    registry.publish(Expert(replace(expert.manifest, name="arc-r3", version=0, provenance=provenance), z))
    args = ["export", "arc-r3", "-f", "peft-lora", "-o", str(tmp_path / "r3"), "--json"]
    code, out, err = t2(*args, "--model", loaded.source, "--registry", str(registry.root))
    assert code == 0, err
    overall = json.loads(out)["fidelity"]["overall"]
    assert overall["max_rank"] == 3 and overall["energy"] == pytest.approx(1.0) and overall["max_error"] < 1e-6
    # A full-spectrum expert has no such rank: the budget is still asked for, before any model loads.
    code, _, err = t2(
        "export", "arc", "-f", "peft-lora", "-o", str(tmp_path / "full"), "--registry", str(registry.root)
    )
    assert code == 2 and "--rank K or --energy E" in err
