"""An engine and the expert it holds: what both passes of `t2 run` share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from t2cli.engines.base import Engine, RowExpert
from t2cli.errors import EngineError
from t2cli.experts.formats import EXPORTERS
from t2cli.experts.lora import is_lora_expert, load_lora_adapter

if TYPE_CHECKING:
    from t2cli.experts.registry import Registry
    from t2cli.models.loading import LoadedModel


# What the slot holds after `apply`: never equal to an expert spec, so the next `hold` swaps.
_UNNAMED = "<unnamed z>"


class ExpertSlot:
    """An engine and the expert it holds: weights swap only when the wanted expert changes (counted)."""

    def __init__(self, engine: Engine, registry: Registry, loaded: LoadedModel) -> None:
        self.engine = engine
        self.registry = registry
        self.loaded = loaded
        self.model_slug = loaded.slug
        self.fingerprint = loaded.fingerprint
        self.current: str | None = None  # a fresh engine holds the base weights
        self.swaps = 0

    def hold(self, spec: str | None) -> None:
        """Hold a pinned expert (`name@version`) or, with None, the base weights."""
        if spec == self.current:
            return
        if spec is None:
            self.engine.set_expert(None)
        else:
            expert = self.registry.resolve(spec, self.model_slug).load(self.fingerprint)
            self.engine.set_expert(expert.z, expert.manifest.svf_rule)
        self.current = spec
        self.swaps += 1

    def apply(self, z: dict[str, torch.Tensor], rule: str) -> None:
        """Hold an unnamed z, e.g. a search candidate."""
        self.engine.set_expert(z, rule)
        self.current = _UNNAMED
        self.swaps += 1

    def is_lora(self, spec: str) -> bool:
        """Whether `spec` names a LoRA expert (its behaviour is a PEFT adapter, not a z)."""
        return is_lora_expert(self.registry.resolve(spec, self.model_slug).manifest())

    def row_expert(self, spec: str | None) -> RowExpert | None:
        """A pinned SVF expert as a row of a mixed batch (`Engine.generate_rows`); None for the base."""
        if spec is None:
            return None
        expert = self.registry.resolve(spec, self.model_slug).load(self.fingerprint)
        return RowExpert.of(expert.z, expert.manifest.svf_rule)

    def adapter(self, spec: str | None, rank: int) -> tuple[Path | None, str]:
        """The PEFT folder that answers for `spec` in a mixed-adapter batch, and the path it takes:
        `exact` (the base, or a LoRA expert's own adapter) or `lora:R` (an SVF expert exported at rank R,
        cached under $T2_HOME/lora on first use)."""
        if spec is None:
            return None, "exact"
        ref = self.registry.resolve(spec, self.model_slug)
        expert = ref.load(self.fingerprint)
        if is_lora_expert(expert.manifest):
            return ref.path, "exact"
        # The PEFT adapter the hf engine mixes per row: an SVF expert exported once (t2cli.experts.formats).
        return EXPORTERS.get("peft-lora").cached(self.loaded, expert, ref.path, rank), f"lora:{rank}"

    @contextmanager
    def holding(self, spec: str | None) -> Iterator[Engine]:
        """The engine that answers with `spec` (None: the base weights) for the duration of a block.

        An SVF expert is swapped into this slot's engine. A LoRA expert's behaviour lives in a PEFT
        adapter, which only the transformers engine runs: it gets an hf engine of its own over the
        PEFT-wrapped model, and this engine is left as it was.
        """
        if spec is not None:
            ref = self.registry.resolve(spec, self.model_slug)
            if is_lora_expert(ref.manifest()):
                from t2cli.engines.hf import HFEngine

                if self.loaded.model is None:
                    raise EngineError(f"LoRA expert {ref.spec} runs on the transformers engine; pass --engine hf")
                adapted = load_lora_adapter(self.loaded.model, ref.path, fingerprint=self.fingerprint)
                yield HFEngine(replace(self.loaded, model=adapted), batch_size=self.engine.batch_size)
                return
        self.hold(spec)
        yield self.engine
