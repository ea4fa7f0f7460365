"""`--adapt prompt`: the base model is asked which category each request is (t2cli.adapt.routers.LabelRouter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from t2cli.adapt.options import StrategyOptions
    from t2cli.adapt.routers import Router
    from t2cli.adapt.strategies.base import RouterContext


class PromptStrategy:
    name = "prompt"
    options = ("experts", "calibrate", "route_tokens")

    @classmethod
    def check(cls, options: StrategyOptions) -> None:
        return None

    @classmethod
    def build(cls, context: RouterContext) -> Router:
        from t2cli.adapt.routers import LabelRouter

        options = context.options
        return LabelRouter(
            context.slot,
            context.loaded,
            context.bank(),
            calibrate=options.calibrate,
            route_tokens=options.route_tokens,
        )
