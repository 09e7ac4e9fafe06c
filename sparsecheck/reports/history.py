"""``--history FILE``: each run appends one JSON line with what every check measured; ``sparsecheck
history FILE`` prints them as a table and the HTML report draws each check's value across them.

One line per run (keys sorted)::

    {"checks": {nodeid: {"status", "value"}}, "checkpoints": [{"source", "fingerprint"}, ...],
     "exitstatus", "label", "sparsecheck_version", "time"}

``label`` is ``--label TEXT`` (e.g. the checkpoint's step or the commit), else null.  The line
is appended with one ``write`` to a file opened for appending, so concurrent runs never
interleave within a line and a crash leaves the earlier lines intact.  The line is written
before the other reports, so an ``--html`` report of the same run draws it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

import sparsecheck
from sparsecheck._atomic import append_output, prepare_output_path
from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Scalar
from sparsecheck.reports._table import format_value, text_table
from sparsecheck.reports.json_report import strict_json


@dataclass(frozen=True)
class HistoryRecord:
    """One run of a history file."""

    time: str
    label: str | None
    #: ``{nodeid: {"status", "value"}}``.
    checks: dict[str, dict[str, Any]]
    exitstatus: int | None = None

    @property
    def name(self) -> str:
        """How the run is shown: its label, else its time."""
        return self.label or self.time

    def value(self, nodeid: str) -> Scalar:
        return self.checks.get(nodeid, {}).get("value")

    def status(self, nodeid: str) -> str | None:
        status: str | None = self.checks.get(nodeid, {}).get("status")
        return status


def history_line(
    session: Session, outcomes: Sequence[CheckOutcome], label: str | None, exitstatus: int
) -> str:
    """The JSON line a run appends."""
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "label": label,
        "sparsecheck_version": sparsecheck.__version__,
        "exitstatus": exitstatus,
        "checkpoints": [
            {"source": info.get("source"), "fingerprint": info.get("fingerprint")}
            for info in session.checkpoints.values()
        ],
        "checks": {o.check.nodeid: {"status": o.status.value, "value": o.value} for o in outcomes},
    }
    return json.dumps(strict_json(record), sort_keys=True, allow_nan=False, ensure_ascii=False, default=str)


def read_history(path: Path) -> list[HistoryRecord]:
    """The runs of a history file, oldest first; a malformed line is a UsageError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such history file (write one with run --history FILE)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            records.append(
                HistoryRecord(
                    time=str(data["time"]),
                    label=data.get("label"),
                    checks=dict(data["checks"]),
                    exitstatus=data.get("exitstatus"),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{path}:{number}: not a sparsecheck history line ({type(exc).__name__}: {exc})"
            ) from None
    return records


def check_names(records: Sequence[HistoryRecord]) -> dict[str, str]:
    """Every check of the records by nodeid, first seen first, each named by its id (its nodeid
    when two spec files have a check of that id)."""
    nodeids = list(dict.fromkeys(nodeid for record in records for nodeid in record.checks))
    ids = [nodeid.rpartition("::")[2] for nodeid in nodeids]
    return {nodeid: (i if ids.count(i) == 1 else nodeid) for nodeid, i in zip(nodeids, ids, strict=True)}


def history_table(records: Sequence[HistoryRecord]) -> str:
    """One row per check, one column per run: its value, with its status unless PASS."""
    headers = ["check", *(record.name for record in records)]
    rows = []
    for nodeid, name in check_names(records).items():
        cells = []
        for record in records:
            status = record.status(nodeid)
            if status is None:
                cells.append("")
                continue
            text = format_value(record.value(nodeid))
            cells.append(text if status == Status.PASS.value else f"{text} {status}")
        rows.append([name, *cells])
    return text_table(rows, headers=headers)


class HistoryWriter:
    """Appends the run's line to the ``--history`` file when the session finishes."""

    def __init__(self, path: Path, label: str | None) -> None:
        self.path = path
        self.label = label
        self.outcomes: list[CheckOutcome] = []

    @hookimpl
    def sparsecheck_check_report(self, outcome: CheckOutcome) -> None:
        self.outcomes.append(outcome)

    @hookimpl(tryfirst=True)
    def sparsecheck_sessionfinish(self, session: Session, exitstatus: int) -> None:
        data = (history_line(session, self.outcomes, self.label, int(exitstatus)) + "\n").encode("utf-8")
        append_output(self.path, data, "--history")

    @hookimpl
    def sparsecheck_unconfigure(self, config: Config) -> None:
        config.pluginmanager.unregister(self)


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    options.add(
        "--history",
        "history_path",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="append this run's results to FILE (JSON lines; see `sparsecheck history FILE`); "
        "--html draws each check across it",
    )
    options.add(
        "--label", "label", metavar="TEXT", help="the run's name in --history (e.g. the checkpoint step)"
    )


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    path = config.getoption("history_path")
    if path is not None:
        writer = HistoryWriter(prepare_output_path(Path(path), "--history"), config.getoption("label"))
        config.pluginmanager.register(writer, name="history-writer")
