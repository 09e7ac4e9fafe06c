"""The terminal output: per-check lines (``-v``), the read pass's progress, the results table and
the summary line.

Verbosity (``config.options["verbosity"]``): ``-q`` (< 0) prints only the failures and the
summary line; the default adds the results table and the warnings; ``-v`` adds a line per
check as it is judged and, per check, its breakdown by group, notes and skipped tensors
(``-vv`` shows every group row).  Status colours appear only on a terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator

import click

from sparsecheck import _progress
from sparsecheck._config import Config, ReadProgress, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.metrics._api import Fields
from sparsecheck.reports._filereport import stdout_taken
from sparsecheck.reports._table import (
    COLUMN_ALIGN,
    FAILED,
    HEADERS,
    duration_text,
    format_value,
    outcome_message,
    outcome_rows,
    overall_status,
    summary_text,
    text_table,
)

Write = Callable[[str], None]

STATUS_COLORS = {
    Status.PASS: "green",
    Status.FAIL: "red",
    Status.WARN: "yellow",
    Status.ERROR: "magenta",
    Status.SKIP: "cyan",
}
#: The smallest read pass shown as progress.
SHOWN_READ_BYTES = 64 * 2**20
#: Field columns of a breakdown table (the group key column comes on top).
MAX_FIELD_COLUMNS = 8
#: Group rows shown at ``-v``; ``-vv`` shows all.
MAX_GROUP_ROWS = 30


def styled_status(status: Status, width: int = 0) -> str:
    return click.style(status.value.ljust(width), fg=STATUS_COLORS[status], bold=True)


def format_sizes(done: float, total: float) -> str:
    """``0.25/1.02 GB`` (in MB below a gigabyte)."""
    unit, scale = ("GB", 1e9) if total >= 1e9 else ("MB", 1e6)
    return f"{done / scale:.2f}/{total / scale:.2f} {unit}"


def read_note(progress: ReadProgress) -> str:
    """``0.25/1.02 GB  180 MB/s``: the read pass's bytes and rate."""
    rate = progress.bytes_done / progress.elapsed if progress.elapsed > 0 else 0.0
    return f"{format_sizes(progress.bytes_done, progress.bytes_total)}  {rate / 1e6:.0f} MB/s"


def group_table(granularity: str, groups: dict[str, Fields], value_field: str) -> list[str]:
    """Lines of a breakdown table: the group key, the value field, then the other fields."""
    names = dict.fromkeys([value_field, *(name for fields in groups.values() for name in fields)])
    shown = list(names)[:MAX_FIELD_COLUMNS]
    rows = [[key, *(format_value(fields.get(n)) for n in shown)] for key, fields in groups.items()]
    align = ("left", *["right"] * len(shown))
    table = text_table(rows, headers=[granularity, *shown], colalign=align)
    lines = table.splitlines()
    hidden = list(names)[MAX_FIELD_COLUMNS:]
    if hidden:
        lines.append(f"({len(hidden)} more fields in the JSON report: {', '.join(hidden)})")
    return lines


def _indented(text: str) -> list[str]:
    return ["    " + line for line in text.splitlines()]


class TerminalReporter:
    """Writes the per-check lines and the progress bar, and the end-of-run summary."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.verbosity: int = config.getoption("verbosity", 0)
        self.outcomes: list[CheckOutcome] = []
        self._read: _progress.Task | None = None
        #: ``diff`` and ``mask``: results without pass/fail (no status lines, table or counts).
        self.first_look: bool = bool(config.getoption("first_look", False))
        _progress.set_enabled(self.verbosity >= 0)

    # -- while running ---------------------------------------------------------------------

    @hookimpl
    def sparsecheck_check_report(self, outcome: CheckOutcome) -> None:
        self.outcomes.append(outcome)
        if self.verbosity >= 1 and not self.first_look:
            _progress.erase()
            line = f"{styled_status(outcome.status, 5)} {outcome.check.id} ({duration_text(outcome)})"
            click.echo(line, err=stdout_taken(self.config))

    @hookimpl
    def sparsecheck_read_progress(self, progress: ReadProgress) -> None:
        """The read pass as a progress task, with sizes and rate as its note (unless it reads
        less than :data:`SHOWN_READ_BYTES`: that takes no time worth showing)."""
        if progress.bytes_total < SHOWN_READ_BYTES:
            return
        if self._read is None:
            self._read = _progress.start("read pass", progress.tensors_total, "tensors", progress.elapsed)
        self._read.update(progress.tensors_done, read_note(progress))
        if progress.tensors_done >= progress.tensors_total:
            self._read.finish()
            self._read = None

    @hookimpl
    def sparsecheck_sessionfinish(self) -> None:
        _progress.erase()

    # -- the summary -----------------------------------------------------------------------

    @hookimpl(wrapper=True)
    def sparsecheck_terminal_summary(self, session: Session, write: Write) -> Generator[None, object, object]:
        """The table, breakdowns and failures; other plugins' lines; then the summary line.
        When every check stopped at bad input (exit code 4: nothing was measured), only each
        distinct error, one line each, on stderr."""
        _progress.erase()
        judged = [o for o in self.outcomes if o.status is not Status.SKIP]
        if judged and all(o.status is Status.ERROR and o.error_kind == "usage" for o in judged):
            for message in dict.fromkeys(o.message for o in judged):
                click.echo(f"sparsecheck: error: {message}", err=True)
            return (yield)
        lines: list[str] = []
        if self.verbosity >= 0 and self.outcomes and not self.first_look:
            rows = outcome_rows(self.outcomes, styled_status)
            table = text_table(rows, headers=HEADERS, colalign=COLUMN_ALIGN)
            lines += ["", *table.splitlines()]
        if self.verbosity >= 1:
            for outcome in self.outcomes:
                lines += self._details(outcome)
        lines += self._messages("failures", [o for o in self.outcomes if o.status in FAILED])
        if self.verbosity >= 0 and not self.first_look:
            warned = [o for o in self.outcomes if o.status is Status.WARN]
            lines += self._messages("warnings", warned)
        for line in lines:
            write(line)
        result = yield
        duration = time.time() - session.started
        summary = summary_text(self.outcomes, len(self.config.deselected), duration)
        if self.first_look and overall_status(self.outcomes) is not Status.ERROR:
            summary = f"read in {duration:.2f}s"
        color = STATUS_COLORS[overall_status(self.outcomes)]
        write(click.style(summary, fg=color, bold=True))
        return result

    def _details(self, outcome: CheckOutcome) -> list[str]:
        """Breakdown tables, notes and skipped tensors of one check's result."""
        result = outcome.result
        if result is None:
            return []
        same = outcome.check.id == result.metric
        title = outcome.check.id if same else f"{outcome.check.id} ({result.metric})"
        heading = result.definition if same else f"{outcome.check.id}: {result.definition}"
        fields = [(name, format_value(value)) for name, value in result.fields.items()]
        lines = ["", heading, *_indented(text_table(fields))]
        shown_granularities = [g for g in result.groups if self.verbosity >= 2 or g == outcome.check.per]
        for granularity in shown_granularities:
            groups = result.groups[granularity]
            lines += ["", f"{title} per {granularity}:"]
            limit = len(groups) if self.verbosity >= 2 else MAX_GROUP_ROWS
            shown = dict(list(groups.items())[:limit])
            lines += group_table(granularity, shown, result.value_field)
            if len(groups) > limit:
                lines.append(f"... {len(groups) - limit} more groups (-vv shows all)")
        if result.notes or result.skipped:
            lines += ["", f"{title}:"]
        lines += [f"  note: {note}" for note in result.notes]
        if result.skipped:
            lines.append(f"  skipped tensors ({len(result.skipped)}):")
            lines += [f"    {s.name}: {s.reason}" for s in result.skipped]
        return lines

    @staticmethod
    def _messages(title: str, outcomes: list[CheckOutcome]) -> list[str]:
        """A section listing each outcome's status, id, spec location and message."""
        if not outcomes:
            return []
        lines = ["", click.style(title, bold=True)]
        for outcome in outcomes:
            where = outcome.check.location
            lines.append(f"{styled_status(outcome.status)} {outcome.check.id} at {where}")
            lines += _indented(outcome_message(outcome))
        return lines

    @hookimpl
    def sparsecheck_unconfigure(self, config: Config) -> None:
        config.pluginmanager.unregister(self)


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    config.pluginmanager.register(TerminalReporter(config), name="terminalreporter")
