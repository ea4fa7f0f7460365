"""`--adapt probe`: a probe (t2cli.adapt.probe) names each request's category from the base model's hidden
states at an early layer, over the request's own first tokens — no routing prompt, no expert swapped in,
and only the model's first layers run (t2cli.engines.early_exit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from t2cli.adapt.bank import Bank
    from t2cli.adapt.options import StrategyOptions
    from t2cli.adapt.probe import ProbeHead
    from t2cli.adapt.routers import Decision, Router
    from t2cli.adapt.strategies.base import RouterContext
    from t2cli.engines.base import Prompt
    from t2cli.engines.slot import ExpertSlot
    from t2cli.experts.manifest_fields import ProbeInfo


class ProbeRouter:
    """Each request's mean hidden state at the probe's layer, over its first `tokens` tokens, goes through
    the probe's head; the likeliest category's expert answers it, and a request whose calibrated top
    probability is under the threshold, or whose category has no expert in the bank (`other`), keeps the
    base weights. The states are the base weights': on the hf engine the slot holds none while pass 1 reads
    them; vLLM reads them from a truncated base decoder of its own, so nothing is swapped for pass 1."""

    def __init__(self, slot: ExpertSlot, bank: Bank, spec: str, info: ProbeInfo, head: ProbeHead) -> None:
        from t2cli.errors import EngineError

        if not hasattr(slot.engine, "pooled_hidden_states"):
            raise EngineError(f"engine {slot.engine.name} cannot read hidden states for a probe; use --engine hf")
        self.slot, self.bank, self.spec, self.info, self.head = slot, bank, spec, info, head
        self.categories = [name for name, _ in info.categories]
        self.note: str | None = None

    @property
    def identity(self) -> dict[str, Any]:
        return {
            "strategy": "probe",
            "bank": [e.ref.spec for e in self.bank.experts],
            "probe": self.spec,
            "categories": self.categories,
        }

    def decide(self, prompts: Sequence[Prompt]) -> list[Decision]:
        from t2cli.adapt.probe import decide
        from t2cli.adapt.routers import Decision
        from t2cli.engines.base import question_text
        from t2cli.tasks.classification import OTHER

        if not prompts:
            return []
        if not self.slot.engine.loads_weights_itself:  # type: ignore[attr-defined]
            # The states come from the engine's own model, which must hold the base weights; an engine that
            # loads weights itself (vLLM) reads them from a decoder of its own, whatever expert it holds.
            self.slot.hold(None)
        texts = [question_text(prompt) for prompt in prompts]
        features = self.slot.engine.pooled_hidden_states(texts, self.info.layer, self.info.tokens)  # type: ignore[attr-defined]
        probabilities = self.head.probabilities(features)
        fallback = self.categories.index(OTHER) if OTHER in self.categories else None
        decisions = []
        for row, choice in zip(probabilities, decide(probabilities, self.info.threshold, fallback), strict=True):
            label = self.categories[choice]
            scores = {name: round(float(p), 4) for name, p in zip(self.categories, row, strict=True)}
            decisions.append(Decision(self.bank.expert_for(label), None, label, scores))
        return decisions


class ProbeStrategy:
    name = "probe"
    options = ("experts", "classifier")

    @classmethod
    def check(cls, options: StrategyOptions) -> None:
        return None

    @classmethod
    def build(cls, context: RouterContext) -> Router:
        from t2cli.adapt.bank import find_probe
        from t2cli.adapt.probe import ProbeHead

        ref = find_probe(context.registry, context.loaded.slug, context.options.classifier)
        probe = ref.load(context.loaded.fingerprint)
        assert probe.manifest.probe is not None  # find_probe returns probes only
        head = ProbeHead.from_tensors(probe.z)
        return ProbeRouter(context.slot, context.bank(), ref.spec, probe.manifest.probe, head)
