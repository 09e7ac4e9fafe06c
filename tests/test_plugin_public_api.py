"""The bundled plugins are models for third-party authors: they import sparsecheck only through
its public API (modules without a leading underscore), and that API is documented."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import sparsecheck
import sparsecheck.training

PLUGINS = Path(__file__).parents[1] / "plugins"
SOURCES = sorted(PLUGINS.glob("*/src/*/*.py"))


def sparsecheck_imports(source: Path) -> list[tuple[str, str | None]]:
    """(module, name) of every ``sparsecheck`` import in ``source`` (name None for ``import x``)."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found += [(node.module, alias.name) for alias in node.names]
    return [(m, n) for m, n in found if m == "sparsecheck" or m.startswith("sparsecheck.")]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_bundled_plugins_import_only_the_public_api(source: Path) -> None:
    private = [
        f"{module}.{name}" if name else module
        for module, name in sparsecheck_imports(source)
        if any(part.startswith("_") for part in module.split(".")) or (name or "").startswith("_")
    ]
    assert private == [], f"{source.name} imports private sparsecheck names"


def test_the_check_sees_every_plugin_and_a_private_import(tmp_path: Path) -> None:
    assert {p.parts[len(PLUGINS.parts)] for p in SOURCES} == {"sparsecheck-trl", "sparsecheck-update-norm"}
    planted = tmp_path / "plugin.py"
    planted.write_text(
        "from sparsecheck._atomic import write_text_atomic\nfrom sparsecheck import hookimpl\n"
    )
    assert sparsecheck_imports(planted) == [
        ("sparsecheck._atomic", "write_text_atomic"),
        ("sparsecheck", "hookimpl"),
    ]


@pytest.mark.parametrize("module", [sparsecheck, sparsecheck.training], ids=lambda m: m.__name__)
def test_the_public_api_is_documented(module: object) -> None:
    undocumented = [
        name
        for name in module.__all__  # type: ignore[attr-defined]
        if (inspect.isclass(value := getattr(module, name)) or inspect.isfunction(value))
        and not value.__doc__
    ]
    assert undocumented == []
