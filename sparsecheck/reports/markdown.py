"""``--md FILE``: GitHub-flavoured markdown, ready for ``$GITHUB_STEP_SUMMARY``.

A heading with the overall result, the results table with each status as an emoji and text,
and a section per failed (and warned) check with its message and spec location.  The file is
replaced, unless ``--md-append`` is given or the file is ``$GITHUB_STEP_SUMMARY`` (where the
job's other steps write too): then the summary is appended.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.exitcodes import ExitCode
from sparsecheck.reports._filereport import FileReport
from sparsecheck.reports._table import (
    COLUMN_ALIGN,
    FAILED,
    HEADERS,
    INTERRUPTED,
    outcome_message,
    outcome_rows,
    overall_status,
    summary_text,
    text_table,
)

EMOJI = {
    Status.PASS: "✅",
    Status.FAIL: "❌",
    Status.WARN: "⚠️",
    Status.ERROR: "💥",
    Status.SKIP: "⏭",
}


def show_status(status: Status) -> str:
    return f"{EMOJI[status]} {status.value}"


def table_cell(text: str) -> str:
    """``text`` safe inside a table cell: pipes escaped, line breaks as ``<br>``."""
    return text.replace("|", "\\|").replace("\n", "<br>")


def code_block(text: str) -> str:
    """``text`` fenced so that no backtick run inside it can close the fence."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _section(title: str, outcomes: list[CheckOutcome]) -> list[str]:
    lines = ["", f"### {title}"]
    for outcome in outcomes:
        lines += [
            "",
            f"**{show_status(outcome.status)} `{outcome.check.id}`** at `{outcome.check.location}`",
            "",
            code_block(outcome_message(outcome)),
        ]
    return lines


def render_markdown(
    outcomes: list[CheckOutcome], deselected: int, duration: float, interrupted: bool = False
) -> str:
    """The whole document; an ``interrupted`` run's heading says so, never green."""
    summary = summary_text(outcomes, deselected, duration)
    if interrupted:
        lines = [f"## 🛑 sparsecheck: {INTERRUPTED} ({summary})"]
    else:
        lines = [f"## {EMOJI[overall_status(outcomes)]} sparsecheck: {summary}"]
    if outcomes:
        rows = [[table_cell(cell) for cell in row] for row in outcome_rows(outcomes, show_status)]
        lines += [
            "",
            text_table(rows, headers=HEADERS, tablefmt="github", colalign=COLUMN_ALIGN),
        ]
    failed = [o for o in outcomes if o.status in FAILED]
    warned = [o for o in outcomes if o.status is Status.WARN]
    if failed:
        lines += _section("Failures", failed)
    if warned:
        lines += _section("Warnings", warned)
    return "\n".join(lines) + "\n"


def is_step_summary(path: Path) -> bool:
    """Whether ``path`` is the GitHub Actions job summary file (``$GITHUB_STEP_SUMMARY``)."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    return summary is not None and summary != "" and Path(summary).resolve() == path.resolve()


class MarkdownReport(FileReport):
    plugin_name = "markdown-report"
    flag = "--md"
    dest = "md_path"
    title = "Markdown report"

    def appends(self) -> bool:
        return bool(self.config.getoption("md_append")) or is_step_summary(self.path)

    def render(self, session: Session, exitstatus: int) -> bytes:
        deselected = len(session.config.deselected)
        interrupted = exitstatus == ExitCode.INTERRUPTED
        text = render_markdown(self.outcomes, deselected, time.time() - session.started, interrupted)
        return (("\n" if self.appends() else "") + text).encode("utf-8")  # appended: a paragraph of its own


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    MarkdownReport.add_option(
        options,
        "write a GitHub-flavoured markdown summary to FILE (appended to $GITHUB_STEP_SUMMARY); - for stdout",
    )
    options.add(
        "--md-append", "md_append", is_flag=True, help="append the --md summary to FILE, not replace it"
    )


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    MarkdownReport.configure(config)
