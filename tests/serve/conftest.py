"""A server over the tiny model and a registry of two experts (m: gsm8k, c: mbpp), on a recording engine."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from t2cli.adapt.prepare import make_router
from t2cli.engines.slot import ExpertSlot
from t2cli.experts.registry import Registry
from t2cli.serve.app import ServeConfig, create_app
from t2cli.serve.service import Service
from tests.helpers import FakeEngine, tiny_model, two_expert_registry

# Words the recording engine routes on: absent from the routing question's own text.
MATH_WORD, CODE_WORD, OTHER_WORD = "zebra", "quokka", "walrus"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return two_expert_registry(tmp_path / "registry")


def routed_engine(engine: FakeEngine, registry: Registry, adapt: str = "prompt") -> Service:
    """A service whose `auto` is the `prompt` strategy, the engine sending MATH_WORD to m, CODE_WORD
    to c and OTHER_WORD to the base."""
    loaded = tiny_model()
    slot = ExpertSlot(engine, registry, loaded)
    router = make_router(adapt, slot, loaded, registry)
    categories = list(router.categories)
    words = {MATH_WORD: "gsm8k", CODE_WORD: "mbpp", OTHER_WORD: "other"}
    engine.routes = {word: categories.index(label) for word, label in words.items()}
    return Service(slot, router)


@pytest.fixture
def make_app(registry: Registry) -> Callable[..., tuple]:
    """(app, access log, engine) for an engine (default: a FakeEngine) and ServeConfig fields."""

    def make(engine: FakeEngine | None = None, **config: object) -> tuple:
        engine = engine or FakeEngine()
        log = io.StringIO()
        return create_app(routed_engine(engine, registry), ServeConfig(**config), log), log, engine

    return make
