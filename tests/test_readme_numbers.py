"""scripts/readme_numbers.py quotes a benchmark's saved output between the README's markers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "scripts" / "readme_numbers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_numbers"] = module
    spec.loader.exec_module(module)
    return module


def test_a_benchmark_log_replaces_its_part_only(tmp_path: Path) -> None:
    log = tmp_path / "7b.log"
    log.write_text("7b bf16 pair\n  sparsecheck / cat      0.91x\n\n")
    text = (
        "intro\n<!-- readme-numbers: bench-cold-7b -->\nold 1.67x\n<!-- /readme-numbers: bench-cold-7b -->\n"
        "<!-- readme-numbers: bench-engine -->\nkept\n<!-- /readme-numbers: bench-engine -->\n"
    )
    got = script().quote_bench(text, f"bench-cold-7b={log}")
    assert "old 1.67x" not in got
    assert "```\n7b bf16 pair\n  sparsecheck / cat      0.91x\n```" in got
    assert "kept" in got and got.startswith("intro\n")


@pytest.mark.parametrize("item", ["bench-nope=x.log", "bench-engine", "bench-engine="])
def test_a_bad_part_is_one_line(item: str) -> None:
    with pytest.raises(SystemExit, match="expected PART=LOG"):
        script().quote_bench("", item)


def test_every_bench_part_has_its_markers_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for part in script().BENCH_PARTS:
        assert f"<!-- readme-numbers: {part} -->" in readme and f"<!-- /readme-numbers: {part} -->" in readme
