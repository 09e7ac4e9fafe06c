"""What the report formats share: value formatting, the results table's rows, status counts."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.metrics._api import Scalar

#: Columns of the results table (terminal and markdown).
HEADERS = ("id", "metric", "value", "expectation", "status", "time")
#: Their alignment (numbers to the right).
COLUMN_ALIGN = ("left", "left", "right", "left", "left", "right")

#: How each status is counted in summaries (and the JSON report's ``summary`` keys).
COUNT_NAMES = {
    Status.PASS: "passed",
    Status.FAIL: "failed",
    Status.WARN: "warned",
    Status.ERROR: "errors",
    Status.SKIP: "skipped",
}

#: Statuses whose message is shown below the table, as a failure.
FAILED = (Status.FAIL, Status.ERROR)


#: What a report of an interrupted run (exit 2) says first: its results are partial.
INTERRUPTED = "interrupted: the run stopped before every check ran (exit status 2); results are partial"


def format_value(value: Scalar) -> str:
    """Compact text for a number: ``0.9413``, ``1.2e-05``, ``1,234,567``; None is ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _format_float(value)
    return str(value)


def _format_float(x: float) -> str:
    magnitude = abs(x)
    if not math.isfinite(x) or x == 0:
        return "0" if x == 0 else str(x)
    if magnitude < 1e-3 or magnitude >= 1e15:
        return f"{x:.3g}"
    if magnitude >= 1e3:
        return f"{x:,.0f}" if x.is_integer() else f"{x:,.1f}"
    # Four significant digits, more where rounding would show a fraction as a whole number
    # (a sparsity of 0.99999 must not read as 1).
    digits = 4
    text = f"{x:.{digits}g}"
    while not x.is_integer() and float(text).is_integer() and digits < 17:
        digits += 1
        text = f"{x:.{digits}g}"
    return text


def format_duration(seconds: float, places: int = 1) -> str:
    return f"{seconds:.{places}f}s"


def format_delta(delta: float) -> str:
    """A signed change: ``+0.012``, ``-3.4e-05``, ``±0``."""
    return "±0" if delta == 0 else ("+" if delta > 0 else "") + format_value(delta)


def value_text(outcome: CheckOutcome) -> str:
    """The value, with the baseline's and the change when compared with one:
    ``0.91 (baseline 0.93, -0.02)``."""
    text = format_value(outcome.value)
    if outcome.baseline is None:
        return text
    delta = outcome.delta
    change = "" if delta is None else f", {format_delta(delta)}"
    return f"{text} (baseline {format_value(outcome.baseline)}{change})"


def outcome_message(outcome: CheckOutcome) -> str:
    """The outcome's message; without one, what was expected and what came for a failure, and
    that the expectation holds (never "expected …, got …") otherwise."""
    if outcome.message:
        return outcome.message
    value = format_value(outcome.value)
    if outcome.status in FAILED:
        return f"expected {outcome.expectation}, got {value}"
    return f"{outcome.expectation} holds (value {value})" if outcome.expectation else f"value {value}"


def outcome_rows(outcomes: Sequence[CheckOutcome], show_status: Callable[[Status], str]) -> list[list[str]]:
    """One row per outcome under :data:`HEADERS`; ``show_status`` renders the status cell."""
    return [
        [
            o.check.id,
            o.check.metric,
            value_text(o),
            o.expectation,
            show_status(o.status),
            "cached" if o.cached else format_duration(o.duration),
        ]
        for o in outcomes
    ]


def status_counts(outcomes: Sequence[CheckOutcome]) -> dict[Status, int]:
    """How many outcomes have each status (every status present, in enum order)."""
    counts = dict.fromkeys(Status, 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


def summary_text(outcomes: Sequence[CheckOutcome], deselected: int, duration: float) -> str:
    """pytest's summary line: ``3 passed, 1 failed, 2 deselected in 1.23s``.

    Zero counts are left out, except ``passed`` (``no checks ran`` when nothing ran).
    """
    counts = status_counts(outcomes)
    parts = [] if outcomes else ["no checks ran"]
    for status, count in counts.items():
        if outcomes and (count or status is Status.PASS):
            name = "error" if status is Status.ERROR and count == 1 else COUNT_NAMES[status]
            parts.append(f"{count} {name}")
    if deselected:
        parts.append(f"{deselected} deselected")
    return f"{', '.join(parts)} in {format_duration(duration, 2)}"


def overall_status(outcomes: Sequence[CheckOutcome]) -> Status:
    """The status a whole run is shown with: the worst one, SKIP when nothing passed."""
    present = {o.status for o in outcomes}
    for status in (Status.ERROR, Status.FAIL, Status.WARN, Status.PASS):
        if status in present:
            return status
    return Status.SKIP
