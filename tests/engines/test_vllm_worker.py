"""t2's vLLM worker extension on a tiny model, without starting vLLM: a stand-in worker whose model runner
holds a transformers model and whose loader yields that model's weights as a checkpoint would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from t2cli.engines.vllm import vllm_distribution
from t2cli.engines.vllm_worker import SVFWorkerExtension
from t2cli.errors import IntegrityError
from t2cli.svd import decompose
from tests.helpers import tamper_cache, tiny_loaded

pytestmark = pytest.mark.skipif(
    vllm_distribution() is None, reason="vLLM is not installed (the worker imports vLLM's loader)"
)


class StandInWorker(SVFWorkerExtension):
    def __init__(self, model: torch.nn.Module) -> None:
        self.model_runner = SimpleNamespace(get_model=lambda: model)
        self.vllm_config = SimpleNamespace(load_config=None, model_config=None)
        self.device = "cpu"


class CheckpointLoader:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def get_all_weights(self, model_config: object, model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        yield from ((name, tensor.detach().clone()) for name, tensor in self.model.state_dict().items())


@pytest.fixture
def worker(t2_home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[StandInWorker, object]:
    loaded = tiny_loaded()
    assert loaded.model is not None
    monkeypatch.setattr(
        "vllm.model_executor.model_loader.get_model_loader", lambda load_config: CheckpointLoader(loaded.model)
    )
    return StandInWorker(loaded.model), loaded


def test_the_worker_holds_the_factors_that_reproduce_the_weights_it_loaded(worker) -> None:
    stand_in, loaded = worker
    path = decompose(loaded).path
    names = [t.name for t in loaded.targets[:3]]
    assert stand_in.t2_prepare(str(path), names) == 3
    assert stand_in.t2_prepare(str(path), names) == 3  # held: nothing read again


def test_the_worker_refuses_a_cache_that_does_not_reproduce_its_weights(worker) -> None:
    # The driver leaves this probe to the worker (decompose(..., probe=False)), so the worker must catch it.
    stand_in, loaded = worker
    path = decompose(loaded).path
    name = loaded.targets[3].name
    tamper_cache(path, name)
    with pytest.raises(IntegrityError, match="does not reproduce vLLM's"):
        stand_in.t2_prepare(str(path), [name])
    assert stand_in.t2_prepare(str(path), [loaded.targets[0].name]) == 1  # nothing half-held from the refusal
