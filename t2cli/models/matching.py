"""Target matching: which parameters of a decoder are the SVF role matrices, and role selections (`mlp`, `q,v`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

from t2cli.errors import BadInputError
from t2cli.targets import ALL_ROLES, ATTENTION_ROLES, MLP_ROLES, TargetMatrix

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
    return match_targets(getattr(model.config, "model_type", None), shapes)


def match_targets(model_type: str | None, shapes: Iterable[tuple[str, tuple[int, ...]]]) -> list[TargetMatrix]:
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
