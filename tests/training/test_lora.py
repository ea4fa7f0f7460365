"""The LoRA baseline: same objectives as SVF, a PEFT adapter published beside an identity z."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from t2cli.cli.app import app
from t2cli.errors import BadInputError
from t2cli.experts.lora import ADAPTER_FILES, is_lora_expert, load_lora_adapter
from t2cli.experts.registry import Registry
from t2cli.models.fingerprint import fingerprint
from t2cli.training.config import TrainConfig
from t2cli.training.publish import publish
from tests.helpers import AlwaysC, StartsWithVowel, make_model_folder, make_task, make_trainer
from tests.training import test_trainer

loaded = test_trainer.loaded  # the same tiny Llama fixture

FAST = dict(batch_size=5, val_every=100, micro_batch=32)


def lora_parameter_count(loaded, rank: int) -> int:
    return sum(rank * sum(t.shape) for t in loaded.targets)


def test_reinforce_trains_an_adapter_and_leaves_the_base_untouched(loaded, tmp_path) -> None:
    before = fingerprint(loaded.model, loaded.targets)
    names = [n for n, _ in loaded.model.named_parameters()]
    trainer = make_trainer(
        loaded, AlwaysC(), tmp_path, method="lora", rank=2, steps=12, batch_size=5, lr=0.05, kl=0.01, val_every=6
    )
    assert trainer.rollout == "choices"
    result = trainer.run()
    assert result.base_val < 0.5 and result.best_val == 1.0
    assert result.steps[-1].reward > result.steps[0].reward
    # The adapter lives on a copy of the module tree that shares the base tensors: the caller's
    # model keeps its names, its weights and no gradient.
    assert [n for n, _ in loaded.model.named_parameters()] == names
    assert fingerprint(loaded.model, loaded.targets) == before
    assert all(p.grad is None for p in loaded.model.parameters())
    assert result.trainable_parameters == lora_parameter_count(loaded, 2)
    assert all(torch.equal(z, torch.ones(t.rank)) for t, z in zip(loaded.targets, result.z.values(), strict=True))
    # Rollouts and validation run the live adapter; the base is the same model with it disabled.
    assert trainer.validate() > trainer.validate(adapted=False)


def test_generate_rollout_starts_at_the_base_and_follows_targets(loaded, tmp_path) -> None:
    options = dict(rollout="generate", steps=2, samples=2, lr=0.05, kl=0.5, max_new_tokens=3, **FAST)
    trainer = make_trainer(loaded, StartsWithVowel(), tmp_path, method="lora", rank=3, targets="q,v", **options)
    result = trainer.run()
    assert result.steps[0].kl == pytest.approx(0.0, abs=1e-6)  # B = 0: the first policy is the base
    assert result.steps[1].kl > 0
    selected = loaded.select("q,v")
    assert result.trainable_parameters == sum(3 * sum(t.shape) for t in selected)
    assert set(result.z) == {t.name for t in selected}


def test_lora_nll_lowers_the_reference_loss(loaded, tmp_path) -> None:
    options = dict(steps=10, batch_size=5, lr=0.05, kl=0.0, val_every=10, max_new_tokens=2)
    trainer = make_trainer(loaded, AlwaysC(), tmp_path, method="lora-nll", rank=2, **options)
    assert trainer.rollout == "generate"
    result = trainer.run()
    assert result.best_val > result.base_val


def test_resume_restores_the_adapter_and_adam(loaded, tmp_path) -> None:
    options = dict(method="lora", rank=2, steps=4, lr=0.05, kl=0.1, checkpoint_every=2, **FAST)
    whole = make_trainer(loaded, AlwaysC(), tmp_path / "whole", **options)
    whole.run()

    class Interrupted(Exception):
        pass

    def stop_after_three(event) -> None:
        if event.record.step == 3:
            raise Interrupted

    cut = make_trainer(loaded, AlwaysC(), tmp_path / "cut", **options)
    cut.observers = [stop_after_three]
    with pytest.raises(Interrupted):
        cut.run()
    resumed = make_trainer(loaded, AlwaysC(), tmp_path / "cut", **options)
    resumed.run(resume=True)
    for name, tensor in whole.policy.snapshot().items():
        assert torch.allclose(resumed.policy.snapshot()[name], tensor, atol=1e-6)


def test_published_expert_holds_a_verified_peft_adapter_that_loads_back(loaded, tmp_path) -> None:
    task = AlwaysC()
    trainer = make_trainer(loaded, task, tmp_path / "run", method="lora", rank=2, steps=6, lr=0.05, **FAST)
    result = trainer.run()
    registry = Registry(tmp_path / "registry")
    ref = publish(registry, loaded, task, None, task.load(), trainer.config, result, "letters")
    manifest = ref.manifest()
    assert is_lora_expert(manifest) and manifest.provenance["method"] == "lora"
    assert manifest.provenance["adapter"]["rank"] == 2
    assert manifest.metrics["trainable_parameters"] == lora_parameter_count(loaded, 2)
    assert set(manifest.files) == set(ADAPTER_FILES)
    adapter_config = json.loads((ref.path / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == 2
    assert registry.verify() == []

    # PEFT loads it back as the best checkpoint: same logits as the trainer's policy at its best step.
    peft_model = load_lora_adapter(loaded.model, ref.path, fingerprint=loaded.fingerprint)
    ids = torch.tensor([[61, 2, 5, 7]])
    trainer.policy.load(trainer.load_checkpoint().best)
    with torch.no_grad():
        expected = trainer.policy.model(input_ids=ids).logits
        assert torch.allclose(peft_model(input_ids=ids).logits, expected, atol=1e-5)
        with peft_model.disable_adapter():
            assert torch.allclose(peft_model(input_ids=ids).logits, loaded.model(input_ids=ids).logits)

    assert set(load_file(str(ref.path / "adapter_model.safetensors"))) == {
        name.replace(".default", "") for name in trainer.policy.trainable
    }
    weights = ref.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    assert "checksum mismatch on adapter_model.safetensors" in registry.verify()[0].message


def test_svf_experts_are_not_loaded_as_adapters(loaded, tmp_path) -> None:
    task = AlwaysC()
    trainer = make_trainer(loaded, task, tmp_path / "run", steps=1, **FAST)
    ref = publish(Registry(tmp_path / "r"), loaded, task, None, task.load(), trainer.config, trainer.run(), "svf")
    assert not is_lora_expert(ref.manifest()) and ref.manifest().files == {}
    with pytest.raises(BadInputError, match="not a LoRA one"):
        load_lora_adapter(loaded.model, ref.path)


def test_options() -> None:
    assert TrainConfig(task="arc", method="lora").rank == 16
    assert TrainConfig(task="arc").rank is None
    lora_nll = TrainConfig(task="arc", method="lora-nll")
    assert (lora_nll.adapter, lora_nll.objective) == ("lora", "nll")
    assert TrainConfig(task="arc", rank=4).rank == 4  # for SVF: the rank of ΔW (top singular values)
    with pytest.raises(BadInputError, match="--rule nuclear applies to SVF"):
        TrainConfig(task="arc", method="lora", rule="nuclear")
    with pytest.raises(BadInputError, match="rank must be >= 1"):
        TrainConfig(task="arc", method="lora", rank=0)


def test_cli_trains_and_publishes_a_lora_expert(tmp_path: Path, t2_home) -> None:
    folder = make_model_folder(tmp_path / "tiny")
    spec = make_task(tmp_path)
    registry = tmp_path / "registry"
    args = ["train", "--task", str(spec), "--model", str(folder), "--method", "lora", "--rank", "2", "--steps", "2",
            "--batch-size", "2", "--samples", "2", "--max-new-tokens", "2", "--val-limit", "2",
            "--registry", str(registry), "-o", "first-lora", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "lora" and summary["config"]["rank"] == 2 and summary["processes"] == 1
    manifest = Registry(registry).resolve("first-lora").manifest()
    assert set(manifest.files) == set(ADAPTER_FILES)
    assert (t2_home / "runs" / "tiny" / "first-lora" / "adapter" / "adapter_config.json").is_file()
    assert CliRunner().invoke(app, ["registry", "verify", "--registry", str(registry)]).exit_code == 0
