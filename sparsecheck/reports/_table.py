"""What the report formats share: value formatting, the results table's rows, status counts."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from sparsecheck.engine._outcome import DURATION_PLACES, CheckOutcome, Status
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


def text_table(rows: Sequence[Sequence[object]], **options: Any) -> str:
    """``tabulate(rows, **options)``, numbers left as formatted; tabulate is imported on the first
    table (~30 ms that a ``-q`` or ``--json`` run does not pay)."""
    from tabulate import tabulate

    return tabulate(rows, disable_numparse=True, **options)


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


def format_duration(seconds: float, places: int = DURATION_PLACES) -> str:
    return f"{seconds:.{places}f}s"


def duration_text(outcome: CheckOutcome) -> str:
    """A check's time as every report shows it: ``0.25s``, or ``cached``."""
    return "cached" if outcome.cached else format_duration(outcome.duration)


def plural(noun: str, count: int) -> str:
    """``layer`` → ``layers`` (unless ``count`` is 1); ``-s``, ``-x``, ``-ch``, ``-sh`` get ``-es``,
    a consonant's ``-y`` becomes ``-ies``."""
    if count == 1:
        return noun
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        return noun[:-1] + "ies"
    return noun + "s"


def format_delta(delta: float) -> str:
    """A signed change: ``+0.012``, ``-3.4e-05``, ``±0``."""
    return "±0" if delta == 0 else ("+" if delta > 0 else "") + format_value(delta)


def value_label(outcome: CheckOutcome) -> str:
    """What the value is, named: ``0.9413`` (the metric's primary value), ``o1=0.4999`` (another
    field an expectation compares), ``4/5 layers`` (the groups passing under ``per:``)."""
    if outcome.groups_passed is not None:
        passed, total = outcome.groups_passed
        return f"{passed}/{total} {plural(outcome.check.per or 'group', total)}"
    text = format_value(outcome.value)
    return text if outcome.value_name is None else f"{outcome.value_name}={text}"


def value_text(outcome: CheckOutcome) -> str:
    """The value's label, with the baseline's value and the change when compared with one:
    ``0.91 (baseline 0.93, -0.02)``; under ``per:`` the baseline is a share of groups, so the
    share is shown too: ``4/5 layers = 0.8 (baseline 1, -0.2)``."""
    text = value_label(outcome)
    if outcome.baseline is None:
        return text
    if outcome.groups_passed is not None:
        text += f" = {format_value(outcome.value)}"
    delta = outcome.delta
    change = "" if delta is None else f", {format_delta(delta)}"
    return f"{text} (baseline {format_value(outcome.baseline)}{change})"


def expectation_text(outcome: CheckOutcome) -> str:
    """The expectation and the ``warn:`` thresholds: ``value > 0.5; warn: value > 0.8``."""
    warn = f"warn: {outcome.warn_expectation}" if outcome.warn_expectation else ""
    return "; ".join(part for part in (outcome.expectation, warn) if part)


def outcome_message(outcome: CheckOutcome) -> str:
    """The outcome's message; without one, what was expected and what came for a failure, and
    that the expectations hold (never "expected …, got …") otherwise."""
    if outcome.message:
        return outcome.message
    value = value_label(outcome)
    if outcome.status in FAILED:
        return f"expected {outcome.expectation}, got {value}"
    held = [f"{outcome.expectation} holds"] if outcome.expectation else []
    held += [f"warn: {outcome.warn_expectation} holds"] if outcome.warn_expectation else []
    return f"{'; '.join(held)} (value {value})" if held else f"value {value}"


def outcome_rows(outcomes: Sequence[CheckOutcome], show_status: Callable[[Status], str]) -> list[list[str]]:
    """One row per outcome under :data:`HEADERS`; ``show_status`` renders the status cell."""
    return [
        [
            o.check.id,
            o.check.metric,
            value_text(o),
            expectation_text(o),
            show_status(o.status),
            duration_text(o),
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
