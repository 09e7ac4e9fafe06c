"""The package's import graph flows one way: no module imports one that (indirectly) imports it.

Every import counts: at module level, inside functions (lazy) and under ``TYPE_CHECKING``, plus
the package ``__init__`` modules an import runs.  The root package ``sparsecheck`` is the
public facade at the top, so nothing inside imports it; the checkpoint readers sit below the
metrics, the engine and the specs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import sparsecheck

PACKAGE = Path(sparsecheck.__file__).parent
#: Modules at the bottom, and the checkpoint readers above them: none imports a higher layer.
LOWER = {"_atomic", "_dtypes", "_extras", "_files", "_json", "_markers", "_version", "errors", "exitcodes"}
LOWER |= {"checkpoints", "_cachedir", "_culprit"}
#: The layers above: configuration, plugin management, the engine, specs, metrics, reports, CLI.
HIGHER = {"_config", "_manager", "_registry", "_session", "_adhoc", "_demo", "cli", "_cli_options"}
HIGHER |= {"hookspec", "testing", "pytest_plugin", "engine", "metrics", "spec", "reports", "training"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The sparsecheck modules ``name`` imports anywhere in its file, and their packages."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                module = ".".join(parts[:end])
                if module in known and module != name and not name.startswith(module + "."):
                    yield module


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imported(name, path, known)) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


def test_no_module_imports_the_public_facade() -> None:
    importers = sorted(name for name, deps in import_graph().items() if "sparsecheck" in deps)
    assert importers == [], f"{importers} import the root package; import the private module instead"


@pytest.mark.parametrize("layer", sorted(LOWER))
def test_lower_layers_import_no_higher_layer(layer: str) -> None:
    higher = {f"sparsecheck.{name}" for name in HIGHER}
    for name, deps in import_graph().items():
        if name == f"sparsecheck.{layer}" or name.startswith(f"sparsecheck.{layer}."):
            above = sorted(dep for dep in deps if _within(dep, higher))
            assert above == [], f"{name} imports {above}, above its layer"


def _within(module: str, layers: set[str]) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def test_the_checker_sees_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_counts_lazy_and_type_checking_imports() -> None:
    graph = import_graph()
    # _config imports the registry inside a method and the outcome types under TYPE_CHECKING.
    assert {"sparsecheck._registry", "sparsecheck.engine._outcome"} <= graph["sparsecheck._config"]
    # Importing sparsecheck.checkpoints._reader runs the sparsecheck.checkpoints package too.
    assert "sparsecheck.checkpoints" in graph["sparsecheck.metrics._api"]
