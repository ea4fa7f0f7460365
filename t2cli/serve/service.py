"""Both passes for one batch of requests, through the library functions `t2 run` answers with.

Pass 1: the requests are grouped by the model they ask for; `auto` goes to the server's router (every
`auto` request of the batch in one `decide`), `base` and expert names to the router `t2 run --adapt`
builds for them. Pass 2: `generate_chunks`, once per sampling setting (one per `max_tokens` in practice),
so each expert's requests share batches and weights swap once per expert group. A streamed request's
listener hears where pass 1 sent it as soon as the batch is routed, then each piece of its answer as
the engine generates it. A failure is returned
in the place of each answer it cost — a bad request its own, a crashed generation its group's — so one
batch never takes the server down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from t2cli.adapt.prepare import make_router, searched_decision
from t2cli.adapt.two_pass import BATCHINGS, check_batching, generate_chunks
from t2cli.engines.context import check_prompt_tokens
from t2cli.errors import NotFoundError
from t2cli.serve.schema import MODEL_AUTO, MODEL_BASE, Ask

if TYPE_CHECKING:
    from t2cli.adapt.routers import Decision, Router
    from t2cli.engines.base import Generation, Sampling
    from t2cli.engines.slot import ExpertSlot


@dataclass(frozen=True)
class Answer:
    """What answered a request and how: pass 1's decision, pass 2's generation, the path it took
    (`exact` or `lora:R`), and pass 1's confidence (the chosen category's probability; None when the
    request named its model, or the strategy has no probabilities)."""

    decision: Decision
    generation: Generation
    path: str
    confidence: float | None


class Service:
    """The model, its expert slot and the server's pass-1 router."""

    def __init__(
        self,
        slot: ExpertSlot,
        router: Router,
        *,
        chunk_size: int = 64,
        lora_rank: int | None = None,
        batching: str = BATCHINGS[0],
    ):
        self.slot, self.router, self.chunk_size, self.lora_rank = slot, router, chunk_size, lora_rank
        self.batching = check_batching(batching, slot)

    def model_ids(self) -> list[str]:
        """What `model` may name: auto, base, and every expert version of this model (`name@version`)."""
        versions = self.slot.registry.catalog().get(self.slot.model_slug, {})
        return [MODEL_AUTO, MODEL_BASE] + [f"{name}@{v}" for name, numbers in sorted(versions.items()) for v in numbers]

    def answer(self, asks: Sequence[Ask]) -> list[Answer | Exception]:
        """One answer (or the error that stopped it) per request, in order."""
        results: dict[int, Answer | Exception] = {}
        by_model: dict[str, list[int]] = {}
        for index, ask in enumerate(asks):
            try:
                check_prompt_tokens([("this request", ask.prompt)], self.slot.loaded)
            except Exception as error:  # too long for the model: this request's 400
                results[index] = error
                continue
            by_model.setdefault(ask.model, []).append(index)
        decisions: dict[int, Decision] = {}
        mixtures: dict[str, dict[str, float] | None] = {}  # α per expert spec, read once a batch
        for model, indices in by_model.items():
            try:
                decided = self._router(model).decide([asks[i].prompt for i in indices])
                decisions.update(zip(indices, [self._with_alpha(d, mixtures) for d in decided], strict=True))
            except Exception as error:  # an unknown expert, or pass 1 failed: these requests only
                results.update(dict.fromkeys(indices, error))
        by_sampling: dict[Sampling, dict[int, Decision]] = {}
        for index, decision in decisions.items():
            by_sampling.setdefault(asks[index].sampling, {})[index] = decision
            listener = asks[index].listener
            if listener is not None:
                listener.routed(decision, self._confidence(asks[index], decision))
        prompts = [ask.prompt for ask in asks]
        listeners = {index: ask.listener for index, ask in enumerate(asks) if ask.listener is not None}

        def on_text(index: int, piece: str) -> None:
            if index in listeners:
                listeners[index].text(piece)

        for sampling, group in by_sampling.items():
            chunks = generate_chunks(
                prompts,
                group,
                self.slot,
                sampling,
                chunk_size=self.chunk_size,
                lora_rank=self.lora_rank,
                batching=self.batching,
                on_text=on_text if listeners else None,
            )
            try:
                for chunk, generated, paths in chunks:
                    for index, generation, path in zip(chunk, generated, paths, strict=True):
                        confidence = self._confidence(asks[index], group[index])
                        results[index] = Answer(group[index], generation, path, confidence)
            except Exception as error:  # a crashed generation: its group's requests not yet answered
                results.update({index: error for index in group if index not in results})
        return [results[index] for index in range(len(asks))]

    def _router(self, model: str) -> Router:
        if model == MODEL_AUTO:
            return self.router
        if model != MODEL_BASE:
            try:
                self.slot.registry.resolve(model, self.slot.model_slug)
            except NotFoundError:  # said without the registry's path on the server
                raise NotFoundError(
                    f"model {model!r} is not served here; use auto, base or one of GET /v1/models"
                ) from None
        return make_router("none" if model == MODEL_BASE else model, self.slot, self.slot.loaded, self.slot.registry)

    def _with_alpha(self, decision: Decision, mixtures: dict[str, dict[str, float] | None]) -> Decision:
        """A named mixture (a composed or searched expert) with its α, as few-shot decisions carry it."""
        spec = decision.expert
        if spec is None or decision.alpha is not None:
            return decision
        if spec not in mixtures:
            ref = self.slot.registry.resolve(spec, self.slot.model_slug)
            recipe = "recipe" in ref.manifest().provenance
            mixtures[spec] = searched_decision(ref, decision.label).alpha if recipe else None
        return replace(decision, alpha=mixtures[spec])

    @staticmethod
    def _confidence(ask: Ask, decision: Decision) -> float | None:
        return decision.scores.get(decision.label) if ask.model == MODEL_AUTO else None
