"""Per-row experts on a transformers model (the hf engine's `generate_rows`): a batch that mixes experts
through the adapted linear layers, each row with its own expert's weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


class RowDispatch:
    """Per-row experts on a transformers model: while installed, each adapted linear layer multiplies every
    row of the batch by its own expert's W'(z) (the base weight for the others), so a batch mixes experts
    at one model's matmuls. `groups` holds the current batch's row indices per expert key (None: the base),
    from `set_rows`."""

    def __init__(self, model: torch.nn.Module, weights: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        self.weights = weights  # expert key → parameter name → W'(z)
        names = sorted({name for adapted in weights.values() for name in adapted})
        self.modules = {name: model.get_submodule(name.removesuffix(".weight")) for name in names}
        self.groups: list[tuple[str | None, torch.Tensor]] = []
        # A forward set on the instance before ours (e.g. accelerate's offloading hook) comes back after.
        self._own_forward = {name: module.__dict__.get("forward") for name, module in self.modules.items()}

    def set_rows(self, rows: Sequence[str | None], device: torch.device) -> None:
        found: dict[str | None, list[int]] = {}
        for index, key in enumerate(rows):
            found.setdefault(key, []).append(index)
        self.groups = [(key, torch.tensor(indices, device=device)) for key, indices in found.items()]

    def _forward(self, name: str, module: torch.nn.Module) -> Any:
        def forward(x: torch.Tensor) -> torch.Tensor:
            def weight(key: str | None) -> torch.Tensor:
                return module.weight if key is None else self.weights[key].get(name, module.weight)

            if len(self.groups) == 1:
                return torch.nn.functional.linear(x, weight(self.groups[0][0]), module.bias)
            out = x.new_empty((*x.shape[:-1], module.weight.shape[0]))
            for key, rows in self.groups:
                out.index_copy_(0, rows, torch.nn.functional.linear(x.index_select(0, rows), weight(key), module.bias))
            return out

        return forward

    def __enter__(self) -> RowDispatch:
        for name, module in self.modules.items():
            module.forward = self._forward(name, module)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, module in self.modules.items():
            if self._own_forward[name] is None:
                del module.forward  # the class's forward again
            else:
                module.forward = self._own_forward[name]
