from __future__ import annotations

import json

import pytest
import torch

from t2cli.errors import BadInputError
from t2cli.models.fingerprint import fingerprint
from t2cli.models.loading import wrap_model
from t2cli.training import objectives
from t2cli.training.config import TrainConfig
from t2cli.training.objectives import advantages
from t2cli.training.trainer import Trainer, batch_at
from tests.helpers import AlwaysC, StartsWithVowel, build_tiny_model, make_trainer, tiny_tokenizer


@pytest.fixture
def loaded(t2_home):
    model = build_tiny_model("llama", seed=5, initializer_range=0.3)
    model.generation_config.eos_token_id = 62
    return wrap_model(model, tiny_tokenizer(), spec="tiny", model_id="tiny")


def test_reinforce_raises_the_reward_of_generated_completions(loaded, tmp_path) -> None:
    trainer = make_trainer(
        loaded,
        StartsWithVowel(),
        tmp_path,
        rollout="generate",
        steps=30,
        batch_size=5,
        samples=6,
        lr=0.1,
        kl=0.0,
        max_new_tokens=2,
        val_every=100,
        micro_batch=32,
    )
    result = trainer.run()
    rewards = [r.reward for r in result.steps]
    assert len(rewards) == 30
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.5


def test_exact_choice_gradient_learns_the_answer_letter(loaded, tmp_path) -> None:
    trainer = make_trainer(loaded, AlwaysC(), tmp_path, steps=20, batch_size=5, lr=0.1, kl=0.01, val_every=10)
    assert trainer.rollout == "choices"
    result = trainer.run()
    assert result.base_val < 0.5
    assert result.best_val == 1.0 and result.best_step in (10, 20)
    assert result.steps[-1].reward > result.steps[0].reward


def test_ties_with_the_base_publish_z_1_unless_the_last_step_is_selected(loaded, tmp_path) -> None:
    # A step far too small to change any answer: validation ties with the base at every check.
    options = {"steps": 2, "batch_size": 5, "lr": 1e-7, "kl": 0.0, "val_every": 1}
    best = make_trainer(loaded, AlwaysC(), tmp_path / "best", **options).run()
    assert best.best_step == 0 and all(bool(torch.all(z == 1)) for z in best.z.values())
    last = make_trainer(loaded, AlwaysC(), tmp_path / "last", select="last", **options).run()
    assert last.best_step == 2 and last.best_val == best.base_val
    assert any(bool(torch.any(z != 1)) for z in last.z.values())


def test_gradients_touch_only_z(loaded, tmp_path) -> None:
    before = fingerprint(loaded.model, loaded.targets)
    params = {n: p.clone() for n, p in loaded.model.named_parameters()}
    trainer = make_trainer(loaded, AlwaysC(), tmp_path, steps=3, batch_size=5, lr=0.1, val_every=100)
    result = trainer.run()
    assert fingerprint(loaded.model, loaded.targets) == before
    assert all(torch.equal(p, params[n]) for n, p in loaded.model.named_parameters())
    assert all(p.grad is None for p in loaded.model.parameters())
    assert any(not torch.equal(d, torch.zeros_like(d)) for d in trainer.policy.delta.values())
    assert result.trainable_parameters == sum(t.rank for t in loaded.targets)


@pytest.mark.parametrize("rollout", ["generate", "choices"])
def test_resume_equals_an_uninterrupted_run(loaded, tmp_path, rollout) -> None:
    options = dict(
        rollout=rollout,
        steps=6,
        batch_size=4,
        samples=2,
        lr=0.05,
        kl=0.1,
        max_new_tokens=3,
        val_every=2,
        checkpoint_every=3,
    )
    whole = make_trainer(loaded, AlwaysC(), tmp_path / "whole", **options).run()

    class Interrupted(Exception):
        pass

    def stop_after_four(event) -> None:
        if event.record.step == 4:
            raise Interrupted

    first = make_trainer(loaded, AlwaysC(), tmp_path / "cut", **options)
    first.observers = [stop_after_four]
    with pytest.raises(Interrupted):
        first.run()
    resumed = make_trainer(loaded, AlwaysC(), tmp_path / "cut", **options).run(resume=True)
    assert [r.step for r in resumed.steps] == list(range(1, 7))
    for name, z in whole.z.items():
        assert torch.allclose(resumed.z[name], z, atol=1e-6)
    assert resumed.best_val == whole.best_val and resumed.best_step == whole.best_step
    lines = (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 7))


def test_resume_with_other_options_is_refused(loaded, tmp_path) -> None:
    make_trainer(loaded, AlwaysC(), tmp_path, steps=2, batch_size=5, checkpoint_every=1, val_every=100).run()
    with pytest.raises(BadInputError, match="other options"):
        make_trainer(loaded, AlwaysC(), tmp_path, steps=4, batch_size=5, checkpoint_every=1, val_every=100).run(
            resume=True
        )


def test_kl_is_zero_at_z_equal_one(loaded, tmp_path) -> None:
    trainer = make_trainer(
        loaded,
        StartsWithVowel(),
        tmp_path,
        rollout="generate",
        steps=1,
        batch_size=5,
        samples=2,
        kl=0.5,
        max_new_tokens=3,
        val_every=100,
    )
    assert trainer.run().steps[0].kl == pytest.approx(0.0, abs=1e-6)


def test_nll_method_lowers_the_reference_loss(loaded, tmp_path) -> None:
    trainer = make_trainer(
        loaded, AlwaysC(), tmp_path, method="nll", steps=15, batch_size=5, lr=0.1, kl=0.0, val_every=15
    )
    assert trainer.rollout == "generate"
    result = trainer.run()
    assert result.best_val > result.base_val


def test_nll_targets_end_with_the_end_of_turn_token(loaded, tmp_path, monkeypatch) -> None:
    # Without it an nll expert learns the answer but not to stop after it (math@1 ran to the token limit).
    loaded.tokenizer.eos_token = loaded.tokenizer.convert_ids_to_tokens(62)
    trainer = make_trainer(loaded, AlwaysC(), tmp_path, method="nll", steps=1, batch_size=5, val_every=100)
    seen = []
    monkeypatch.setattr(objectives, "sequence_pass", lambda ctx, sequences, *a, **k: seen.extend(sequences) or (0.0, 1))
    objectives.nll_step(trainer.context, trainer.train[:2])
    reference = loaded.tokenizer(AlwaysC().reference_completion(trainer.train[0]), add_special_tokens=False)
    assert seen[0][1] == [*reference["input_ids"], 62]


def test_baselines_and_batches() -> None:
    rewards = torch.tensor([1.0, -1.0, 1.0, 1.0])
    assert torch.equal(advantages(rewards, "none", 2), rewards)
    assert torch.equal(advantages(rewards, "mean", 2), rewards - 0.5)
    assert torch.equal(advantages(rewards, "group", 2), torch.tensor([1.0, -1.0, 0.0, 0.0]))
    assert batch_at(10, 3, 0, 0) == batch_at(10, 3, 0, 0)
    epoch = [i for step in range(3) for i in batch_at(10, 3, 0, step)]
    assert len(set(epoch)) == 9
    with pytest.raises(BadInputError, match="exceeds"):
        batch_at(2, 3, 0, 0)


def test_bad_options_are_refused() -> None:
    with pytest.raises(BadInputError, match="unknown baseline"):
        TrainConfig(task="arc", baseline="median")
    with pytest.raises(BadInputError, match="steps must be"):
        TrainConfig(task="arc", steps=0)
    with pytest.raises(BadInputError, match="rank must be >= 1"):
        TrainConfig(task="arc", rank=0)
    with pytest.raises(BadInputError, match="--rank with --rule nuclear"):
        TrainConfig(task="arc", rank=4, rule="nuclear")


def test_svf_rank_adapts_only_the_top_singular_values(loaded, tmp_path) -> None:
    options = dict(method="nll", targets="mlp", steps=3, batch_size=5, lr=0.1, val_every=100, select="last")
    trainer = make_trainer(loaded, AlwaysC(), tmp_path, rank=3, **options)
    assert all(d.numel() == 3 for d in trainer.policy.trainable.values())
    result = trainer.run()
    assert result.trainable_parameters == 3 * len(trainer.policy.trainable)
    for name, z in result.z.items():
        assert z.numel() == trainer.policy.full_ranks[name]
        assert torch.equal(z[3:], torch.ones(z.numel() - 3)) and not torch.equal(z[:3], torch.ones(3))


class ClozeThird(AlwaysC):
    """The same choices scored by the likelihood of their text after a plain question."""

    name = "cloze-third"
    uses_chat_template = False


def test_likelihood_rollout_learns_the_right_choice_text(loaded, tmp_path) -> None:
    trainer = make_trainer(loaded, ClozeThird(), tmp_path, steps=20, batch_size=5, lr=0.1, kl=0.01, val_every=10)
    assert trainer.rollout == "likelihood"
    result = trainer.run()
    assert result.base_val < 0.5
    assert result.best_val == 1.0
    assert result.steps[-1].reward > result.steps[0].reward


@pytest.mark.parametrize("method", ["nll", "svf"])
def test_no_vocabulary_sized_tensor_is_moved_during_a_step(loaded, tmp_path, monkeypatch, method) -> None:
    """The loss runs where the logits are: masks and targets travel to them, never the reverse."""
    vocab = loaded.model.config.vocab_size
    moved: list[tuple[int, ...]] = []
    original = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        if self.dim() == 3 and self.shape[-1] == vocab:  # B × T × vocab (sampling moves B × vocab rows)
            moved.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    options = dict(steps=1, batch_size=5, samples=2, kl=0.5, max_new_tokens=3, val_every=100)
    make_trainer(loaded, StartsWithVowel() if method == "svf" else AlwaysC(), tmp_path, method=method, **options).run()
    assert moved == []


@pytest.mark.parametrize("method", ["nll", "lora-nll"])
def test_recomputed_layers_train_the_same_parameters(loaded, tmp_path, method) -> None:
    """--recompute trades compute for memory only: the trained parameters are those of the plain run."""
    options = dict(method=method, steps=2, batch_size=5, micro_batch=2, lr=0.1, kl=0.1, val_every=100, rank=3)
    results = []
    for recompute in (False, True):
        config = TrainConfig(task=AlwaysC().name, **options)
        trainer = Trainer(
            loaded, AlwaysC(), AlwaysC().load(), AlwaysC().load(split="validation"), config,
            run_dir=tmp_path / str(recompute), recompute=recompute,
        )  # fmt: skip
        trainer.run()
        results.append(trainer.policy.snapshot())
    for name, tensor in results[0].items():
        assert not torch.equal(tensor, torch.ones_like(tensor)) or method == "lora-nll"
        assert torch.allclose(results[1][name], tensor, atol=1e-6), name
