"""`--adapt classifier`: the `cls` expert names each request's category (t2cli.adapt.routers.ClassifierRouter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from t2cli.adapt.options import StrategyOptions
    from t2cli.adapt.routers import Router
    from t2cli.adapt.strategies.base import RouterContext


class ClassifierStrategy:
    name = "classifier"
    options = ("experts", "classifier", "route_tokens")

    @classmethod
    def check(cls, options: StrategyOptions) -> None:
        return None

    @classmethod
    def build(cls, context: RouterContext) -> Router:
        from t2cli.adapt.bank import find_classifier
        from t2cli.adapt.routers import ClassifierRouter

        bank = context.bank()
        classifier = find_classifier(context.registry, context.loaded.slug, context.options.classifier)
        return ClassifierRouter(
            context.slot, context.loaded, bank, classifier, route_tokens=context.options.route_tokens
        )
