"""The wheel ships every package, the specs and the license (CI also builds and installs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _setuptools_config() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not run from a source tree")
    config: dict[str, object] = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]
    return config


def test_every_package_folder_is_listed() -> None:
    listed = set(_setuptools_config()["packages"])  # type: ignore[call-overload]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sparsecheck").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    specs = {
        f"sparsecheck.specs.{p.name}"
        for p in (ROOT / "specs").iterdir()
        if p.is_dir() and p.name != "checkpoints"
    }
    specs = {s for s in specs if any((ROOT / "specs" / s.rsplit(".", 1)[1]).glob("*.sparsecheck.yaml"))}
    assert specs <= listed


def test_the_demo_finds_the_suites_in_a_source_checkout() -> None:
    from sparsecheck._demo import bundled_specs, paper_suites

    assert bundled_specs() == ROOT / "specs"
    assert all(path.is_file() for path in paper_suites())
