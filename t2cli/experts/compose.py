"""α-composition of SVF experts: z' = Σ_k α_k(matrix) · z_k, matrix by matrix.

Composition is linear in z, so a single expert with α = 1 comes back bit for bit (1.0 · z is
exact in floating point and a one-term sum adds nothing). α may differ per matrix: a gradient over
depth gives each layer its own value, per-role keys give q, k, v, o, gate, up, down their own.
With `normalize`, each matrix's α are divided by their sum: the mix is a weighted average of z.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import torch

from t2cli.errors import BadInputError
from t2cli.experts.files import Expert
from t2cli.experts.manifest import check_compatible, new_manifest
from t2cli.experts.recipes import AlphaSpec, AlphaValue, Recipe
from t2cli.models.loading import slugify
from t2cli.targets import TargetMatrix

if TYPE_CHECKING:
    from t2cli.experts.registry import Registry


class Placed(Protocol):
    """Where a matrix sits: a TargetMatrix, or an expert manifest's TargetInfo."""

    @property
    def role(self) -> str: ...

    @property
    def layer(self) -> int: ...

    @property
    def rank(self) -> int: ...


# A list of a model's TargetMatrix, or a manifest's {parameter name: TargetInfo}.
Targets = Mapping[str, Placed] | Iterable[TargetMatrix]


def keyed(targets: Targets) -> dict[str, Placed]:
    """Targets keyed by parameter name, in their given order."""
    if isinstance(targets, Mapping):
        return dict(targets)
    return {t.name: t for t in targets}


def depth(targets: Mapping[str, Placed]) -> int:
    """Number of decoder layers the targets span (every selection covers all layers)."""
    if not targets:
        raise BadInputError("no target matrices given; select at least one target")
    return max(t.layer for t in targets.values()) + 1


def at_depth(value: AlphaValue, layer: int, num_layers: int) -> float:
    """A scalar as is; a gradient's value at a layer, its anchors spread from layer 0 to the last.

    The position layer·(n−1)/(L−1) is kept as an exact fraction, so a layer on an anchor gets the
    anchor itself and equal neighbouring anchors give that value exactly (a + f·0 = a).
    """
    if not 0 <= layer < num_layers:
        raise BadInputError(f"layer {layer} is outside a model of {num_layers} layers; check the targets")
    if not isinstance(value, tuple):
        return value
    if num_layers == 1:  # a single layer sits at the start of the gradient
        return value[0]
    index, remainder = divmod(layer * (len(value) - 1), num_layers - 1)
    if remainder == 0:
        return value[index]
    low, high = value[index], value[index + 1]
    return low + remainder / (num_layers - 1) * (high - low)


def alpha_for(target: Placed, alpha: AlphaSpec, num_layers: int) -> float:
    """α of one expert on one matrix: the role's value, evaluated at the matrix's layer."""
    return at_depth(alpha.for_role(target.role), target.layer, num_layers)


def resolve_alphas(
    alphas: Sequence[AlphaSpec], targets: Targets, num_layers: int | None = None, normalize: bool = False
) -> dict[str, tuple[float, ...]]:
    """Per matrix, the α of every expert (normalised to sum 1 if asked); no tensor is touched."""
    placed = keyed(targets)
    num_layers = depth(placed) if num_layers is None else num_layers
    weights: dict[str, tuple[float, ...]] = {}
    for name, target in placed.items():
        alpha = tuple(alpha_for(target, spec, num_layers) for spec in alphas)
        if normalize:
            total = math.fsum(alpha)
            if math.isclose(total, 0.0, abs_tol=1e-12):
                raise BadInputError(
                    f"α sums to 0 on {name}, so it cannot be normalised; change the α or drop normalize"
                )
            alpha = tuple(a / total for a in alpha)
        weights[name] = alpha
    return weights


def check_coverage(z_list: Sequence[Mapping[str, torch.Tensor]], targets: Mapping[str, Placed]) -> None:
    """Every input holds exactly the targets' matrices, each a vector of the matrix's rank."""
    for k, z in enumerate(z_list, start=1):
        for name, target in targets.items():
            if name not in z:
                raise BadInputError(f"input {k} has no z for {name}; compose experts that adapt the same matrices")
            if tuple(z[name].shape) != (target.rank,):
                raise BadInputError(
                    f"input {k} has z of shape {tuple(z[name].shape)} for {name}, expected ({target.rank},); "
                    "compose experts of the same base model"
                )
        extra = next((name for name in z if name not in targets), None)
        if extra is not None:
            raise BadInputError(
                f"input {k} adapts {extra}, which the targets lack; compose experts with the same targets"
            )


def compose_vectors(
    z_list: Sequence[Mapping[str, torch.Tensor]],
    alphas: Sequence[AlphaSpec],
    targets: Targets,
    num_layers: int | None = None,
    normalize: bool = False,
) -> dict[str, torch.Tensor]:
    """z' = Σ_k α_k z_k for every target matrix (num_layers defaults to the depth the targets span)."""
    if not z_list or len(z_list) != len(alphas):
        raise BadInputError(f"got {len(z_list)} z inputs and {len(alphas)} α; give one α per expert (at least one)")
    placed = keyed(targets)
    check_coverage(z_list, placed)
    composed: dict[str, torch.Tensor] = {}
    for name, alpha in resolve_alphas(alphas, placed, num_layers, normalize).items():
        total = alpha[0] * z_list[0][name]
        for weight, z in zip(alpha[1:], z_list[1:], strict=True):
            total = total + weight * z[name]
        composed[name] = total
    return composed


def compose_recipe(recipe: Recipe, registry: Registry, model: str | None = None) -> Expert:
    """Resolve a recipe's experts in a registry and compose them into a new, unpublished expert.

    The inputs must share base weights (fingerprint), targets and SVF rule. The result's
    provenance holds the recipe with every version pinned and the base model filled in, so the
    manifest alone reproduces the mix.
    """
    if recipe.output is None:
        raise BadInputError("the composed expert needs a name; pass -o NAME or set `output:` in the recipe")
    if model is not None and recipe.base_model is not None and slugify(model) != slugify(recipe.base_model):
        raise BadInputError(f"--model {model} differs from the recipe's base_model {recipe.base_model}; drop one")
    # Resolving in the base model's registry folder is what checks the experts against base_model.
    wanted = model or recipe.base_model
    refs = [registry.resolve(e.ref, slugify(wanted) if wanted else None) for e in recipe.experts]
    manifests = [ref.manifest() for ref in refs]
    first = manifests[0]
    for manifest in manifests[1:]:
        check_compatible(first, manifest)
        if manifest.svf_rule != first.svf_rule:
            raise BadInputError(
                f"{first.ref} uses SVF rule {first.svf_rule!r} but {manifest.ref} uses {manifest.svf_rule!r}; "
                "compose experts trained with the same rule"
            )
    z = compose_vectors(
        [ref.load(first.base_fingerprint).z for ref in refs],
        [e.alpha for e in recipe.experts],
        first.targets,
        normalize=recipe.normalize,
    )
    pinned = replace(
        recipe,
        base_model=first.base_model,
        experts=tuple(replace(e, version=ref.version) for e, ref in zip(recipe.experts, refs, strict=True)),
    )
    tasks = {m.task for m in manifests}
    manifest = new_manifest(
        name=recipe.output,
        base_model=first.base_model,
        base_fingerprint=first.base_fingerprint,
        targets=first.targets,
        provenance={"kind": "composed", "recipe": pinned.to_dict()},
        svf_rule=first.svf_rule,
        task=tasks.pop() if len(tasks) == 1 else None,
        description=recipe.description,
    )
    return Expert(manifest, z)
