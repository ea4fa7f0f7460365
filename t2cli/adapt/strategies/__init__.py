"""Pass 1's strategies (`--adapt NAME`), registered by name as plug-ins.

A strategy is one class in a file of its own (`base.RouterPlugin`): its name, the StrategyOptions
fields it reads, a check of them before any model loads, and the router it builds. t2's own are
`prompt`, `classifier`, `few-shot` and `probe`; other packages add theirs through the `t2cli.routers`
entry-point group (t2cli.plugins). `none` and expert names are not strategies: see
t2cli.adapt.prepare.make_router.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from t2cli.plugins import PluginRegistry

if TYPE_CHECKING:
    from t2cli.adapt.strategies.base import RouterPlugin

NONE = "none"  # the base weights for every prompt

ROUTERS: PluginRegistry[RouterPlugin] = PluginRegistry(
    "router",
    "t2cli.routers",
    {
        "prompt": "t2cli.adapt.strategies.prompt:PromptStrategy",
        "classifier": "t2cli.adapt.strategies.classifier:ClassifierStrategy",
        "few-shot": "t2cli.adapt.strategies.few_shot:FewShotStrategy",
        "probe": "t2cli.adapt.strategies.probe:ProbeStrategy",
    },
)


def adapt_names() -> list[str]:
    """What --adapt takes besides an expert name: none and every registered strategy."""
    return [NONE, *ROUTERS.names()]


def readers(option: str) -> list[str]:
    """The strategies that read a StrategyOptions field (the prefix of its flag's help)."""
    return [name for name, plugin in ROUTERS.loaded() if option in plugin.options]
