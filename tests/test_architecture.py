"""The package layout holds: layers import only downward, no import loops, short import chains, small modules.

Layers (docs/architecture.md): cli → adapt / serve / training / plots (and doctor: both read every layer below) →
experts / engines → core (the other top-level modules, models/ and tasks/). Imports inside `if TYPE_CHECKING:`
are annotations only and are not counted; imports inside functions are.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "t2cli"
MAX_LINES = 350
MAX_IMPORT_LEVELS = 9
LAYERS = {"cli": 3, "adapt": 2, "serve": 2, "training": 2, "plots": 2, "doctor": 2, "experts": 1, "engines": 1}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    if top == "__main__":
        return 3
    return LAYERS.get(top, 0)


def _type_only_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


@functools.cache
def import_graph() -> dict[str, frozenset[str]]:
    """Each t2cli module → the t2cli modules it imports at run time."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text())
        skipped = _type_only_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in paths and c != name)
        graph[name] = frozenset(targets)
    return graph


def longest_chain(graph: dict[str, frozenset[str]]) -> list[str]:
    @functools.cache
    def chain_from(module: str) -> tuple[str, ...]:
        return (module, *max((chain_from(m) for m in graph[module]), key=len, default=()))

    return list(max((chain_from(m) for m in graph), key=len))


def test_there_are_no_import_loops() -> None:
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            assert state.get(target) != "open", f"import loop: {' -> '.join([*path, module, target])}"
            if target not in state:
                visit(target, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_layers_import_only_downward() -> None:
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_import_chains_are_short() -> None:
    chain = longest_chain(import_graph())
    assert len(chain) - 1 <= MAX_IMPORT_LEVELS, " -> ".join(chain)


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_the_checks_see_the_layout() -> None:
    """Guards the guards: the graph has the packages and edges the checks above are meant to judge."""
    graph = import_graph()
    assert {"t2cli.cli.app", "t2cli.experts.registry", "t2cli.engines.slot", "t2cli.adapt.routers"} <= set(graph)
    assert "t2cli.experts.files" in graph["t2cli.experts.registry"]
    assert layer("t2cli.cli.run") == 3 and layer("t2cli.svf") == 0 and layer("t2cli.tasks.arc") == 0
    assert longest_chain({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset()}) == ["a", "b", "c"]
