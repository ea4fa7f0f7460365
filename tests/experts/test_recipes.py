from __future__ import annotations

from pathlib import Path

import pytest

from t2cli.errors import BadInputError, NotFoundError
from t2cli.experts.recipes import AlphaSpec, Recipe, RecipeExpert, parse_recipe, recipe_from_cli, recipe_from_dict
from t2cli.targets import ALL_ROLES

FULL = """
base_model: smollm2-135m
description: reasoning with a ramp
experts:
  - name: gsm8k@2
    alpha: 0.6
  - name: arc
    alpha: [0.2, 1.0]
  - name: mbpp
    alpha: {q: 0.1, mlp: [0, 0.5, 0], default: 0.2}
normalize: true
output: mix
"""


def test_full_recipe_parses_into_typed_records() -> None:
    recipe = parse_recipe(FULL)
    assert recipe.base_model == "smollm2-135m"
    assert recipe.description == "reasoning with a ramp"
    assert recipe.normalize is True
    assert recipe.output == "mix"
    gsm8k, arc, mbpp = recipe.experts
    assert (gsm8k.name, gsm8k.version, gsm8k.ref) == ("gsm8k", 2, "gsm8k@2")
    assert (arc.version, arc.ref) == (None, "arc")
    assert gsm8k.alpha == AlphaSpec((("default", 0.6),))
    assert arc.alpha.for_role("down") == (0.2, 1.0)
    assert mbpp.alpha.for_role("q") == 0.1
    assert mbpp.alpha.for_role("k") == 0.2
    assert mbpp.alpha.for_role("up") == (0.0, 0.5, 0.0)


def test_round_trip_through_yaml_and_dict() -> None:
    recipe = parse_recipe(FULL)
    assert parse_recipe(recipe.to_yaml()) == recipe
    assert recipe_from_dict(recipe.to_dict()) == recipe
    assert recipe.to_dict() == {
        "base_model": "smollm2-135m",
        "description": "reasoning with a ramp",
        "experts": [
            {"name": "gsm8k@2", "alpha": 0.6},
            {"name": "arc", "alpha": [0.2, 1.0]},
            {"name": "mbpp", "alpha": {"q": 0.1, "mlp": [0.0, 0.5, 0.0], "default": 0.2}},
        ],
        "normalize": True,
        "output": "mix",
    }


def test_per_role_keys_are_canonically_ordered() -> None:
    first = parse_recipe("experts: [{name: a, alpha: {default: 1, mlp: 2, q: 3}}]")
    second = parse_recipe("experts: [{name: a, alpha: {q: 3, mlp: 2, default: 1}}]")
    assert first == second
    assert list(first.to_dict()["experts"][0]["alpha"]) == ["q", "mlp", "default"]


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        ({"mlp": 0.6, "attn": 0.3}, {"q": 0.3, "o": 0.3, "gate": 0.6, "down": 0.6}),
        ({"q": 0.1, "default": 0.5}, {"q": 0.1, "k": 0.5, "up": 0.5}),
        ({"q": 0.1, "attn": 0.3, "default": 0.9}, {"q": 0.1, "v": 0.3, "gate": 0.9}),
        ({"down": 2, "mlp": 1, "attn": 0}, {"down": 2.0, "up": 1.0, "k": 0.0}),
    ],
)
def test_most_specific_alpha_key_wins(alpha: dict, expected: dict) -> None:
    spec = recipe_from_dict({"experts": [{"name": "a", "alpha": alpha}]}).experts[0].alpha
    assert {role: spec.for_role(role) for role in expected} == expected


def test_cli_form_builds_the_same_recipe_as_yaml() -> None:
    text = "experts:\n  - {name: math, alpha: 0.4}\n  - {name: arc@2, alpha: 0.6}\nnormalize: true\noutput: mix\n"
    from_cli = recipe_from_cli(["math=0.4", "arc@2=0.6"], normalize=True, output="mix")
    assert from_cli == parse_recipe(text)
    assert from_cli.to_dict() == parse_recipe(text).to_dict()
    assert from_cli == Recipe(
        experts=(
            RecipeExpert("math", None, AlphaSpec((("default", 0.4),))),
            RecipeExpert("arc", 2, AlphaSpec((("default", 0.6),))),
        ),
        normalize=True,
        output="mix",
    )


def test_cli_form_accepts_exponents_and_negative_alpha() -> None:
    recipe = recipe_from_cli(["a=1e-3", "b=-0.5"])
    assert [e.alpha.for_role("q") for e in recipe.experts] == [0.001, -0.5]
    assert recipe.to_dict() == {
        "experts": [{"name": "a", "alpha": 0.001}, {"name": "b", "alpha": -0.5}],
        "normalize": False,
    }


def test_recipe_file_by_path_and_by_string(tmp_path: Path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text(FULL)
    assert parse_recipe(path) == parse_recipe(str(path)) == parse_recipe(FULL)


def test_missing_recipe_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="absent.yaml does not exist"):
        parse_recipe(str(tmp_path / "absent.yaml"))


BAD_RECIPES = [
    ("- a\n- b\n", "recipe must be a mapping"),
    ("experts: [{name: a, alpha: 1}]\nmerge_method: linear\n", "unknown field 'merge_method'; use base_model"),
    ("normalize: true\n", "needs `experts:`, a non-empty list"),
    ("experts: []\n", "needs `experts:`, a non-empty list"),
    ("experts: {a: 1}\n", "needs `experts:`, a non-empty list"),
    ("experts: [gsm8k]\n", r"experts\[0\] must be a mapping like"),
    ("experts: [{name: a, weight: 1}]\n", r"experts\[0\] has unknown field 'weight'; use name and alpha"),
    ("experts: [{alpha: 1}]\n", r"experts\[0\].name must be an expert name"),
    ("experts: [{name: 3, alpha: 1}]\n", r"experts\[0\].name must be an expert name"),
    ("experts: [{name: Math!, alpha: 1}]\n", r"experts\[0\].name: invalid expert name 'Math!'"),
    ("experts: [{name: a@0, alpha: 1}]\n", r"experts\[0\].name: invalid version in 'a@0'; write name@N"),
    ("experts: [{name: a@two, alpha: 1}]\n", r"invalid version in 'a@two'"),
    ("experts: [{name: a}]\n", r"experts\[0\].alpha \(a\) is missing"),
    ("experts: [{name: a, alpha: lots}]\n", r"alpha \(a\) must be a number, got 'lots'; use a number, a list"),
    ("experts: [{name: a, alpha: 1e-3}]\n", r"got '1e-3' \(YAML reads 1e-3 as text; write 0.001"),
    ("experts: [{name: a, alpha: true}]\n", r"must be a number, got True"),
    ("experts: [{name: a, alpha: .nan}]\n", r"alpha \(a\) is nan; use a finite number"),
    ("experts: [{name: a, alpha: [0.5]}]\n", r"is a gradient with 1 value\(s\); give at least two"),
    ("experts: [{name: a, alpha: []}]\n", r"is a gradient with 0 value\(s\)"),
    ("experts: [{name: a, alpha: [0.5, x]}]\n", r"alpha \(a\)\[1\] must be a number, got 'x'"),
    ("experts: [{name: a, alpha: {}}]\n", r"alpha \(a\) is an empty mapping"),
    ("experts: [{name: a, alpha: {mlp: 1, attn: 1, ffn: 1}}]\n", r"unknown key 'ffn'; use q, k, v, o, gate"),
    ("experts: [{name: a, alpha: {mlp: {up: 1}, attn: 1}}]\n", r"alpha \(a\).mlp nests a mapping"),
    ("experts: [{name: a, alpha: {mlp: 0.5, q: 1}}]\n", r"gives no value for role\(s\) k,v,o; add `default:`"),
    ("experts: [{name: a, alpha: {attn: [1]}}]\n", r"no value for role\(s\) gate,up,down"),
    ("experts: [{name: a, alpha: 1}, {name: a, alpha: 2}]\n", r"experts\[1\]: expert 'a' is listed twice"),
    ("experts: [{name: a, alpha: 1}]\nnormalize: 1\n", "normalize must be true or false, got 1"),
    ("experts: [{name: a, alpha: 1}]\noutput: mix@2\n", "output 'mix@2' must be a bare name"),
    ("experts: [{name: a, alpha: 1}]\noutput: My Mix\n", "output: invalid expert name 'My Mix'"),
    ("experts: [{name: a, alpha: 1}]\ndescription: ''\n", "description must be a non-empty string"),
    ("experts: [{name: a, alpha: 1}]\nbase_model: 5\n", "base_model must be a non-empty string, got 5"),
    ("experts: [{name: a, alpha: 1}\n", r"recipe is not valid YAML at line \d+; fix the syntax"),  # PyYAML's line
]


@pytest.mark.parametrize(("text", "message"), BAD_RECIPES)
def test_bad_recipe_field_is_refused_with_a_one_line_fix(text: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as caught:
        parse_recipe(text)
    assert "\n" not in str(caught.value)


def test_distinct_versions_of_one_expert_may_be_mixed() -> None:
    recipe = parse_recipe("experts: [{name: a@1, alpha: 0.5}, {name: a@2, alpha: 0.5}]")
    assert [e.ref for e in recipe.experts] == ["a@1", "a@2"]


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        (["math"], "expert term 'math' needs NAME=ALPHA"),
        (["=0.4"], "expert term '=0.4' needs NAME=ALPHA"),
        (["math=much"], "α in 'math=much' is not a number"),
        (["math=nan"], "is nan; use a finite number"),
        (["Math=1"], "invalid expert name 'Math'"),
        (["a=1", "a=2"], "listed twice"),
        ([], "needs `experts:`"),
    ],
)
def test_bad_cli_terms_are_refused(terms: list[str], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        recipe_from_cli(terms)


def test_every_role_is_covered_by_any_accepted_alpha() -> None:
    for alpha in (0.5, [0, 1], {"mlp": 1, "attn": 2}, {"q": 1, "default": 0}):
        spec = recipe_from_dict({"experts": [{"name": "a", "alpha": alpha}]}).experts[0].alpha
        assert all(spec.for_role(role) is not None for role in ALL_ROLES)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"experts: &e [{name: a, alpha: 1}]\nx: *e\n", "anchors or aliases"),
        (b"experts: [{name: a, alpha: 1}]\n# \xff\xfe\n", "is not UTF-8 text"),
        (b"\x00\x01\x02\x89PNG binary", "not UTF-8 text"),
        (b"\x00\x01\x02 binary", "not valid YAML"),
        (b"experts: [{name: a, alpha: 1.0e+308}]\n", r"alpha \(a\) is 1e\+308; use a value between -1000 and 1000"),
    ],
)
def test_hostile_recipe_files_are_one_line_bad_input(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "mix.yaml"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        parse_recipe(path)


def test_special_recipe_files_are_refused_without_reading_them(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="is not a regular file"):
        parse_recipe(Path("/dev/zero"))
    with pytest.raises(BadInputError, match="is a folder"):
        parse_recipe(tmp_path)
    with pytest.raises(BadInputError, match="between -1000 and 1000"):
        recipe_from_cli(["gsm8k=1e308"])
