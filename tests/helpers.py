"""Helpers the tests share: tiny random models built from configs, a char-level tokenizer, a tiny
registry of experts, planted label logits, and a fake engine that records what it is asked."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from t2cli.engines.base import Generation, Prompt, Sampling
from t2cli.experts.files import Expert, read_manifest, write_manifest
from t2cli.experts.manifest import new_manifest
from t2cli.experts.manifest_fields import Z_FILE
from t2cli.experts.registry import ExpertRef, Registry
from t2cli.fsutil import file_sha256
from t2cli.models.loading import LoadedModel, wrap_model
from t2cli.tasks.base import Example, Task
from t2cli.training.config import TrainConfig
from t2cli.training.trainer import Trainer

TINY_CONFIGS = {
    "llama": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    ),
    "mistral": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        sliding_window=None,
    ),
    "qwen2": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    ),
    "gemma3_text": dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        sliding_window=16,
    ),
}


def build_tiny_model(model_type: str = "llama", seed: int = 0, **overrides: object) -> torch.nn.Module:
    """A random causal LM of the given architecture, small enough for unit tests."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **overrides})
    model = AutoModelForCausalLM.from_config(config).float().eval()
    model.requires_grad_(False)
    return model


def tiny_tokenizer() -> object:
    """A character-level tokenizer over a-z, space and a few specials (ids < 64, the tiny vocab)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    symbols = [chr(ord("a") + i) for i in range(26)] + [" ", ".", "?", ":", "0", "1", "2", "3", "4", "5"]
    symbols += [chr(ord("A") + i) for i in range(10)]
    vocab = {symbol: i for i, symbol in enumerate(symbols)} | {"<unk>": 60, "<s>": 61, "</s>": 62, "<pad>": 63}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def tiny_loaded(model_type: str = "llama", seed: int = 0, **overrides: object) -> LoadedModel:
    model = build_tiny_model(model_type, seed, **overrides)
    return wrap_model(model, None, spec=f"tiny-{model_type}", model_id=f"tiny-{model_type}")


# The provenance of a trained arc expert, as make_expert writes it.
TRAINED_ARC = {
    "kind": "trained",
    "task": "arc",
    "data_sha256": "ab" * 32,
    "method": "reinforce",
    "hyperparameters": {"lr": 0.002, "kl": 0.1},
    "steps": 40,
    "seed": 0,
}
TRAINED = {"kind": "trained", "data_sha256": "ab" * 32, "method": "svf", "hyperparameters": {}, "steps": 1, "seed": 0}


def tiny_model(seed: int = 0) -> LoadedModel:
    """A 2-layer random Llama with the char-level tokenizer (no chat template: plain prompts)."""
    return wrap_model(build_tiny_model("llama", seed), tiny_tokenizer(), spec="tiny", model_id="tiny-llama")


def publish_expert(
    registry: Registry,
    loaded: LoadedModel,
    name: str,
    task: str | None,
    *,
    kind: str = "trained",
    z: float = 1.0,
    noise_seed: int | None = None,
) -> ExpertRef:
    """An expert of `loaded` on its MLP matrices with every z equal to `z` (1.0: the base model), plus
    seeded noise if asked (experts with independent z, so mixes of them are identifiable)."""
    targets = loaded.select("mlp")
    generator = torch.Generator().manual_seed(noise_seed or 0)

    def vector(rank: int) -> torch.Tensor:
        noise = 0.5 * torch.randn(rank, generator=generator) if noise_seed is not None else 0.0
        return torch.full((rank,), z) + noise

    provenance = {**TRAINED, "task": task} if kind == "trained" else {"kind": kind, "recipe": {}}
    manifest = new_manifest(
        name=name,
        base_model=loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets=targets,
        provenance=provenance,
        task=task,
        description=f"the {task} expert",
    )
    return registry.publish(Expert(manifest, {t.name: vector(t.rank) for t in targets}))


def random_expert(
    loaded: LoadedModel,
    name: str,
    seed: int,
    selection: str = "all",
    rule: str = "none",
    base_model: str | None = None,
    scale: float = 0.2,
    task: str | None = None,
    **provenance: object,
) -> Expert:
    """An expert `name` of `task` (default: `name`) on `loaded` with seeded z = 1 + scale·N(0, 1) (`provenance`:
    fields added)."""
    targets = loaded.select(selection)
    generator = torch.Generator().manual_seed(seed)
    z = {t.name: 1 + scale * torch.randn(t.rank, generator=generator) for t in targets}
    manifest = new_manifest(
        name=name,
        base_model=base_model or loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets=targets,
        provenance=TRAINED_ARC | {"task": task or name} | provenance,
        svf_rule=rule,
        task=task or name,
    )
    return Expert(manifest, z)


def publish_random_expert(registry: Registry, loaded: LoadedModel, name: str, seed: int, **options: object) -> Expert:
    """`random_expert`, published in `registry`."""
    expert = random_expert(loaded, name, seed, **options)
    registry.publish(expert)
    return expert


def plant_label(loaded: LoadedModel, text: str, strength: float = 100.0) -> None:
    """Make `text` (one token) the most likely next token after any prompt: an lm_head with a bias."""
    head = loaded.model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[loaded.tokenizer.convert_tokens_to_ids(text)] = strength
    loaded.model.lm_head = biased.requires_grad_(False)


class FakeEngine:
    """An engine that records calls. Its completion names what it holds (the first z value, or base);
    label_logprobs gives every row `prior` plus 3 on the label of the first route word in the prompt;
    score is minus the distance of the held z to `target` (so a search can be steered)."""

    name = "fake"
    mixed_batches = False
    streams = False  # answers whole: a streamed request gets its text in one piece

    def __init__(
        self,
        *,
        fail_after: int | None = None,
        routes: Mapping[str, int] | None = None,
        prior: Sequence[float] | None = None,
        target: dict | None = None,
    ) -> None:
        self.set_calls: list[str] = []
        self.generated: list[Prompt] = []
        self.generate_calls = 0
        self.label_calls: list[tuple[list[Prompt], list[str]]] = []
        self.fail_after = fail_after
        self.routes = dict(routes or {})
        self.prior = prior
        self.target = target
        self.held: dict[str, torch.Tensor] | None = None

    def tag(self) -> str:
        if not self.held:
            return "base"
        return f"z={float(next(iter(self.held.values()))[0]):.2f}"

    def set_expert(self, z: Mapping[str, torch.Tensor] | None, rule: str = "none") -> None:
        self.held = dict(z) if z else None
        self.set_calls.append(self.tag())

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Generation]:
        if self.fail_after is not None and self.generate_calls >= self.fail_after:
            raise RuntimeError("injected failure")
        self.generate_calls += 1
        self.generated.extend(prompts)
        return [Generation(f"{self.tag()}|{p}", (1,), 1, "stop") for p in prompts]

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[float]:
        if self.target is None or self.held is None:
            return [0.0] * len(prompts)
        distance = sum(float((self.held[n] - t).pow(2).sum()) for n, t in self.target.items())
        return [-distance] * len(prompts)

    def label_logprobs(self, prompts: Sequence[Prompt], labels: Sequence[str]) -> torch.Tensor:
        self.label_calls.append((list(prompts), list(labels)))
        rows = torch.tensor(self.prior or [0.0] * len(labels)).repeat(len(prompts), 1)
        for i, prompt in enumerate(prompts):
            pick = next((k for word, k in self.routes.items() if word in str(prompt)), None)
            if pick is not None:
                rows[i, pick] += 3.0
        return torch.log_softmax(rows, dim=-1)


def write_shots(path: Path, count: int = 3) -> Path:
    rows = [
        {"question": f"what is {i} plus {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def make_model_folder(path: Path) -> Path:
    model = build_tiny_model("llama", seed=5, initializer_range=0.3)
    model.generation_config.eos_token_id = 62
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def make_task(tmp_path: Path) -> Path:
    rows = [{"id": str(i), "word": w, "answer": w[:1]} for i, w in enumerate(["cab", "dog", "egg", "fox"] * 5)]
    (tmp_path / "first.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "first.yaml"
    spec.write_text(
        "name: first-letter\ndescription: say the first letter of a word\ndata: first.jsonl\n"
        "prompt: '{word}'\nanswer: answer\nscorer: exact\n"
    )
    return spec


class StartsWithVowel(Task):
    """Reward +1 when the completion starts with a vowel: learnable from the first-token distribution."""

    name = "vowel"
    description = "say something starting with a vowel"
    answer_cue = ""

    def load(self, source=None, split="train", limit=None) -> list[Example]:
        return [Example(id=f"{split}-{i}", question=w, reference=None) for i, w in enumerate(WORDS)][:limit]

    def score(self, example: Example, completion: str) -> float:
        return 1.0 if completion[:1] and completion[0] in "aeiou" else -1.0


class AlwaysC(Task):
    """Four choices, the answer is always the third one: a letter preference the policy can learn."""

    name = "always-c"
    description = "pick the third option"
    answer_cue = ""

    def load(self, source=None, split="train", limit=None) -> list[Example]:
        return [
            Example(id=f"{split}-{i}", question=w, reference="C", choices=("a", "b", "c", "d"), answer_index=2)
            for i, w in enumerate(WORDS)
        ][:limit]

    def score(self, example: Example, completion: str) -> float:
        return 1.0 if completion.strip().startswith("C") else -1.0

    def reference_completion(self, example: Example) -> str:
        return "C"


def make_trainer(loaded, task: Task, tmp_path: Path, **options) -> Trainer:
    config = TrainConfig(task=task.name, **options)
    return Trainer(loaded, task, task.load(split="train"), task.load(split="validation"), config, run_dir=tmp_path)


WORDS = ["the cat", "a dog", "my hat", "big sun", "red car", "old map", "hot tea", "wet fog", "fun day", "low sky"]


def make_expert(name: str = "arc", *, seed: int = 0, model_seed: int = 0, selection: str = "mlp", **fields) -> Expert:
    """A trained-looking expert of the tiny model: z = 1 + small noise on the selected matrices."""
    loaded = cached_tiny_llama(model_seed)
    targets = loaded.select(selection)
    generator = torch.Generator().manual_seed(seed)
    z = {t.name: 1 + 0.1 * torch.randn(t.rank, generator=generator) for t in targets}
    defaults = {"task": "arc", "description": "Answers grade-school science questions.", "metrics": {"acc": 0.5}}
    manifest = new_manifest(
        name=name,
        base_model=loaded.model_id,
        base_fingerprint=loaded.fingerprint,
        targets=targets,
        provenance=TRAINED_ARC,
        **{**defaults, **fields},
    )
    return Expert(manifest=manifest, z=z)


def rewrite_z(folder: Path, z: dict[str, torch.Tensor]) -> None:
    """Replace z.safetensors and re-sign it, so only the content checks can catch what is wrong."""
    save_file(z, str(folder / Z_FILE))
    manifest = read_manifest(folder)
    sizes = {**manifest.sizes, Z_FILE: (folder / Z_FILE).stat().st_size}
    write_manifest(folder, replace(manifest, sha256=file_sha256(folder / Z_FILE), sizes=sizes))


@functools.cache
def cached_tiny_llama(seed: int = 0) -> LoadedModel:
    """A 2-layer random Llama; another seed gives other weights, hence another fingerprint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return wrap_model(LlamaForCausalLM(config), tokenizer=None, spec="tiny", model_id="tiny-llama")


def tiny_cli_world(tmp_path: Path, rows: Sequence[Mapping]) -> dict:
    """What CLI tests of `t2 run`/`dispatch` start from: a tiny model folder, a registry with a gsm8k and an
    arc expert of it, and a prompts file of `rows`."""
    from t2cli.models.loading import load_model

    folder = make_model_folder(tmp_path / "tiny")
    loaded = load_model(str(folder))
    registry = Registry(tmp_path / "registry")
    publish_expert(registry, loaded, "gsm8k-svf", "gsm8k", z=1.2, noise_seed=1)
    publish_expert(registry, loaded, "arc-svf", "arc", z=0.8, noise_seed=2)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {"tmp": tmp_path, "model": str(folder), "registry": str(registry.root), "prompts": prompts}


def two_expert_registry(root: Path) -> Registry:
    """A registry of the tiny model with a math expert `m` (z = 1.5) and a code expert `c` (z = 0.5)."""
    store = Registry(root)
    loaded = tiny_model()
    publish_expert(store, loaded, "m", "gsm8k", z=1.5)
    publish_expert(store, loaded, "c", "mbpp", z=0.5)
    return store


def tamper_cache(path: Path, name: str) -> None:
    """Flip one value of a stored U tensor of an SVD cache in place, as an edited or bit-rotted file would."""
    raw = bytearray(path.read_bytes())
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    start, _ = header[f"{name}.U"]["data_offsets"]
    offset = 8 + size + start
    value = torch.frombuffer(raw[offset : offset + 4], dtype=torch.float32).item()
    raw[offset : offset + 4] = torch.tensor([value + 10.0]).numpy().tobytes()
    path.write_bytes(bytes(raw))
