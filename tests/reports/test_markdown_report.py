from __future__ import annotations

import re
from pathlib import Path

from report_fixtures import make_outcome, planted_outcomes, run_reports

from sparsecheck.engine._outcome import Status
from sparsecheck.reports.markdown import code_block, render_markdown


def _table_rows(text: str) -> list[list[str]]:
    """Cells of each table line, split on pipes that are not escaped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([cell.strip() for cell in cells])
    return rows


def test_report_file_heading_table_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    outcomes = planted_outcomes()
    run_reports(outcomes, {"md_path": path}, deselected=1)
    text = path.read_text("utf-8")
    heading = text.splitlines()[0]
    assert heading.startswith("## 💥 sparsecheck: ")
    assert "2 passed, 1 failed, 1 warned, 1 error, 1 skipped, 1 deselected in " in heading

    header, rule, *rows = _table_rows(text)
    assert header == ["id", "metric", "value", "expectation", "status", "time"]
    assert all(set(cell) <= set("-:") for cell in rule)
    assert [row[0] for row in rows] == [o.check.id for o in outcomes]
    status_cells = [row[4] for row in rows]
    assert status_cells == ["✅ PASS", "❌ FAIL", "⚠️ WARN", "💥 ERROR", "⏭ SKIP", "✅ PASS"]
    assert rows[0][2] == "0.9413"

    failures = text.split("### Failures", 1)[1].split("### Warnings", 1)[0]
    assert "`every-layer-sparse`** at `specs/demo.sparsecheck.yaml:10:5`" in failures
    assert "3 of 6 layers have sparsity <= 0.6" in failures
    assert "`broken`" in failures
    assert "rl-update-is-sparse" not in failures
    warnings = text.split("### Warnings", 1)[1]
    assert "`sparse-enough`" in warnings


def test_all_passing_run_has_a_green_heading_and_no_sections() -> None:
    text = render_markdown([make_outcome("a", Status.PASS, 0.9)], deselected=0, duration=0.1)
    assert text.startswith("## ✅ sparsecheck: 1 passed in 0.10s\n")
    assert "###" not in text


def test_pipes_and_newlines_do_not_break_the_table() -> None:
    outcome = make_outcome("a|b", Status.FAIL, 0.1, message="line one\nline two")
    outcome.expectation = "x | y"
    rows = _table_rows(render_markdown([outcome], 0, 0.0))
    assert all(len(row) == 6 for row in rows)
    assert rows[2][0] == "a\\|b"


def test_code_block_fence_outlasts_backticks_inside() -> None:
    block = code_block("run ```sparsecheck``` now")
    fence = block.splitlines()[0].removesuffix("text")
    assert fence == "````"
    assert block.endswith("\n````")
