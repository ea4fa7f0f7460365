"""Composition recipes: YAML (or `NAME=ALPHA` arguments) validated into frozen records.

A recipe says which experts to mix and with what α; `t2cli.experts.compose` does the arithmetic. Every
field is checked here, before any tensor is read, and each refusal is one line naming the field
and the fix:

    base_model: smollm2-135m          # optional; must match every expert's base model
    description: math and code        # optional
    experts:
      - name: gsm8k@2                 # registry reference, name or name@version
        alpha: 0.6                    # scalar
      - name: arc
        alpha: [0.2, 1.0]             # gradient over depth: first layer 0.2 ... last layer 1.0
      - name: mbpp
        alpha: {mlp: 0.5, q: 0.1, default: 0.2}   # per role; values may be gradients too
    normalize: true                   # per matrix, scale the α so that they sum to 1
    output: math-code                 # optional; `-o` on the command line overrides it

Per-role keys are the roles (q k v o gate up down), the groups `mlp` and `attn`, and `default`;
the most specific key wins (role, then group, then default), and together they must give every
role a value, so a recipe never depends on which matrices an expert happens to adapt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2cli.errors import BadInputError
from t2cli.experts.manifest_fields import parse_expert_spec
from t2cli.fsutil import read_text_bounded
from t2cli.safeyaml import MAX_YAML_BYTES, dump_yaml, load_yaml
from t2cli.targets import ALL_ROLES, ATTENTION_ROLES, MLP_ROLES

# A scalar, or a gradient: anchors spread evenly from the first layer to the last.
AlphaValue = float | tuple[float, ...]

ROLE_GROUPS: dict[str, tuple[str, ...]] = {"attn": ATTENTION_ROLES, "mlp": MLP_ROLES}
ALPHA_KEYS = (*ALL_ROLES, *ROLE_GROUPS, "default")
RECIPE_KEYS = ("base_model", "description", "experts", "normalize", "output")
EXPERT_KEYS = ("name", "alpha")
ALPHA_HELP = "a number, a list over depth like [0.2, 1.0], or per-role values like {mlp: 0.6, attn: 0.3}"
# |α| beyond this scales z so far from 1 that the mix overflows or is meaningless; refusing it here
# makes it a usage error instead of an integrity failure of the composed z.
MAX_ALPHA = 1000.0


@dataclass(frozen=True)
class AlphaSpec:
    """α for one expert: per-key values (`default`, groups, roles), each a scalar or a gradient."""

    values: tuple[tuple[str, AlphaValue], ...]

    def for_role(self, role: str) -> AlphaValue:
        """The value that applies to a role: its own key, else its group's, else `default`."""
        values = dict(self.values)
        group = next(name for name, roles in ROLE_GROUPS.items() if role in roles)
        for key in (role, group):
            if key in values:
                return values[key]
        return values["default"]  # parse_alpha refuses specs that leave a role uncovered

    def to_data(self) -> float | list[float] | dict[str, float | list[float]]:
        """The plain form: a bare value when only `default` is set, else a mapping."""
        plain = {key: list(value) if isinstance(value, tuple) else value for key, value in self.values}
        return plain["default"] if set(plain) == {"default"} else plain


@dataclass(frozen=True)
class RecipeExpert:
    """One term of the mix: a registry reference and its α."""

    name: str
    version: int | None
    alpha: AlphaSpec

    @property
    def ref(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. `to_dict` gives the canonical plain form stored in composed manifests."""

    experts: tuple[RecipeExpert, ...]
    normalize: bool = False
    base_model: str | None = None
    output: str | None = None
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.base_model is not None:
            data["base_model"] = self.base_model
        if self.description is not None:
            data["description"] = self.description
        data["experts"] = [{"name": e.ref, "alpha": e.alpha.to_data()} for e in self.experts]
        data["normalize"] = self.normalize
        if self.output is not None:
            data["output"] = self.output
        return data

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())


def alpha_summary(recipe: Recipe) -> dict[str, float]:
    """One α per expert (a per-layer α averaged over the layers), for decisions and tables."""
    summary = {}
    for entry in recipe.experts:
        value = entry.alpha.for_role("q")  # searched recipes give every role the same α
        summary[entry.ref] = math.fsum(value) / len(value) if isinstance(value, tuple) else value
    return summary


def parse_ref(ref: Any, field: str = "name") -> tuple[str, int | None]:
    """`name` or `name@V` -> (name, version or None), with the field named in any refusal."""
    if not isinstance(ref, str) or not ref:
        raise BadInputError(f"{field} must be an expert name like `gsm8k` or `gsm8k@2`, got {ref!r}")
    try:
        return parse_expert_spec(ref)
    except BadInputError as error:
        raise BadInputError(f"{field}: {error}") from None


def _is_numeric_text(value: Any) -> bool:
    try:
        return isinstance(value, str) and math.isfinite(float(value))
    except ValueError:
        return False


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = " (YAML reads 1e-3 as text; write 0.001 or 1.0e-3)" if _is_numeric_text(value) else ""
        raise BadInputError(f"{field} must be a number, got {value!r}{hint}; use {ALPHA_HELP}")
    if not math.isfinite(value):
        raise BadInputError(f"{field} is {value}; use a finite number")
    if abs(value) > MAX_ALPHA:
        raise BadInputError(f"{field} is {value:g}; use a value between -{MAX_ALPHA:g} and {MAX_ALPHA:g}")
    return float(value)


def _alpha_value(value: Any, field: str) -> AlphaValue:
    if isinstance(value, list):
        if len(value) < 2:
            raise BadInputError(
                f"{field} is a gradient with {len(value)} value(s); give at least two (first and last layer) "
                "or a plain number"
            )
        return tuple(_number(item, f"{field}[{i}]") for i, item in enumerate(value))
    if isinstance(value, dict):
        raise BadInputError(f"{field} nests a mapping; per-role values must be numbers or lists")
    return _number(value, field)


def parse_alpha(value: Any, field: str) -> AlphaSpec:
    """α in any of its three forms -> an AlphaSpec whose keys give every role a value."""
    if value is None:
        raise BadInputError(f"{field} is missing; give {ALPHA_HELP}")
    if not isinstance(value, dict):
        return AlphaSpec((("default", _alpha_value(value, field)),))
    if not value:
        raise BadInputError(f"{field} is an empty mapping; give {ALPHA_HELP}")
    unknown = [key for key in value if key not in ALPHA_KEYS]
    if unknown:
        raise BadInputError(f"{field} has unknown key {unknown[0]!r}; use {', '.join(ALPHA_KEYS)}")
    if "default" not in value:
        uncovered = [
            role for role in ALL_ROLES if role not in value and not any(
                role in roles and group in value for group, roles in ROLE_GROUPS.items()
            )
        ]  # fmt: skip
        if uncovered:
            raise BadInputError(
                f"{field} gives no value for role(s) {','.join(uncovered)}; add `default:` or keys covering them"
            )
    # Canonical key order, so equal recipes compare and serialise equally whatever the YAML order.
    return AlphaSpec(tuple((key, _alpha_value(value[key], f"{field}.{key}")) for key in ALPHA_KEYS if key in value))


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise BadInputError(f"recipe field {key} must be a non-empty string, got {value!r}")
    return value


def recipe_from_dict(data: Any, source: str = "recipe") -> Recipe:
    """Validate plain data (parsed YAML, or a manifest's stored recipe) into a Recipe."""
    if not isinstance(data, dict):
        raise BadInputError(f"{source} must be a mapping with an `experts:` list, got {type(data).__name__}")
    unknown = [key for key in data if key not in RECIPE_KEYS]
    if unknown:
        raise BadInputError(f"{source} has unknown field {unknown[0]!r}; use {', '.join(RECIPE_KEYS)}")
    entries = data.get("experts")
    if not isinstance(entries, list) or not entries:
        raise BadInputError(f"{source} needs `experts:`, a non-empty list of {{name, alpha}} entries")
    experts: list[RecipeExpert] = []
    for i, entry in enumerate(entries):
        field = f"experts[{i}]"
        if not isinstance(entry, dict):
            raise BadInputError(f"{field} must be a mapping like {{name: gsm8k, alpha: 0.5}}, got {entry!r}")
        unknown = [key for key in entry if key not in EXPERT_KEYS]
        if unknown:
            raise BadInputError(f"{field} has unknown field {unknown[0]!r}; use name and alpha")
        name, version = parse_ref(entry.get("name"), f"{field}.name")
        expert = RecipeExpert(name, version, parse_alpha(entry.get("alpha"), f"{field}.alpha ({entry['name']})"))
        if any(other.ref == expert.ref for other in experts):
            raise BadInputError(f"{field}: expert {expert.ref!r} is listed twice; give it one entry with the summed α")
        experts.append(expert)
    normalize = data.get("normalize", False)
    if not isinstance(normalize, bool):
        raise BadInputError(f"recipe field normalize must be true or false, got {normalize!r}")
    output = _optional_text(data, "output")
    if output is not None and parse_ref(output, "recipe field output")[1] is not None:
        raise BadInputError(f"recipe field output {output!r} must be a bare name; the registry assigns versions")
    return Recipe(
        experts=tuple(experts),
        normalize=normalize,
        base_model=_optional_text(data, "base_model"),
        output=output,
        description=_optional_text(data, "description"),
    )


def parse_recipe(text_or_path: str | Path) -> Recipe:
    """A recipe from YAML text or a file (a Path, or a one-line string ending in .yaml/.yml)."""
    source = "recipe"
    if isinstance(text_or_path, Path) or (
        "\n" not in text_or_path and text_or_path.strip().endswith((".yaml", ".yml"))
    ):
        path = Path(text_or_path).expanduser()
        text, source = read_text_bounded(path, MAX_YAML_BYTES, what="a recipe"), str(path)
    else:
        text = text_or_path
    data = load_yaml(text, source)
    return recipe_from_dict(data, source)


def recipe_from_cli(terms: list[str], *, normalize: bool = False, output: str | None = None) -> Recipe:
    """`["gsm8k=0.4", "arc@2=0.6"]` -> the same Recipe the equivalent YAML gives (scalar α only)."""
    experts = []
    for term in terms:
        ref, equals, alpha = term.partition("=")
        if not equals or not ref:
            raise BadInputError(f"expert term {term!r} needs NAME=ALPHA, like gsm8k=0.5 or gsm8k@2=0.5")
        try:
            value = float(alpha)
        except ValueError:
            raise BadInputError(f"α in {term!r} is not a number; write NAME=ALPHA, like gsm8k=0.5") from None
        experts.append({"name": ref, "alpha": value})
    data: dict[str, Any] = {"experts": experts, "normalize": normalize}
    if output is not None:
        data["output"] = output
    return recipe_from_dict(data, "command line")
