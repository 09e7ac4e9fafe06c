"""What a session produced: each check's outcome (status, value, metric result, message) and
each spec step's record."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from sparsecheck.errors import SparsecheckError
from sparsecheck.metrics._api import MetricResult, Scalar
from sparsecheck.spec._model import Check, Step


class Status(str, Enum):
    """A check's verdict."""

    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    ERROR = "ERROR"
    SKIP = "SKIP"


#: Decimal places of a check's duration, in every report.
DURATION_PLACES = 2


def round_duration(seconds: float) -> float:
    """A check's duration as every report shows it (the terminal ``1.23s``, JSON ``1.23``,
    JUnit ``time="1.23"``)."""
    return round(seconds, DURATION_PLACES)


@dataclass
class CheckOutcome:
    """What running and judging one check gave."""

    check: Check
    status: Status
    result: MetricResult | None = None
    #: The number shown in the table (the primary value, or the share of passing groups).
    value: Scalar = None
    #: The expectation as text, e.g. ``value > 0.7``.
    expectation: str = ""
    message: str = ""
    #: Seconds the check's metric took (reports show :func:`round_duration` of it).
    duration: float = 0.0
    #: For ERROR: ``usage`` (bad input, exit 4) or ``internal`` (a bug, exit 3).
    error_kind: str | None = None
    cached: bool = False
    #: The value the check showed in the baseline (``--baseline``), None without one.
    baseline: Scalar = None
    #: The ``warn:`` thresholds as text, e.g. ``value > 0.8`` (empty without ``warn:``).
    warn_expectation: str = ""
    #: The field ``value`` holds when it is not the result's primary value (``o1`` for
    #: ``{field: o1, gt: …}``); None otherwise.
    value_name: str | None = None
    #: Under ``per:``: how many groups passed and how many there are (``value`` is the share).
    groups_passed: tuple[int, int] | None = None

    @property
    def delta(self) -> float | None:
        """``value`` minus the baseline's, when both are numbers."""
        numbers = [
            x for x in (self.value, self.baseline) if isinstance(x, int | float) and not isinstance(x, bool)
        ]
        return float(numbers[0]) - float(numbers[1]) if len(numbers) == 2 else None

    def to_dict(self) -> dict[str, Any]:
        check = self.check
        return {
            "id": check.id,
            "nodeid": check.nodeid,
            "metric": check.metric,
            "args": dict(check.args),
            "location": str(check.location),
            "marks": list(check.marks),
            "per": check.per,
            "mostly": check.mostly,
            "status": self.status.value,
            "value": self.value,
            "baseline": self.baseline,
            "delta": self.delta,
            "expectation": self.expectation,
            "warn": self.warn_expectation,
            "message": self.message,
            "duration": round_duration(self.duration),
            "cached": self.cached,
            "result": self.result.to_dict() if self.result else None,
        }


@dataclass
class StepRecord:
    """What became of one step in a session."""

    step: Step
    #: ``ran``, ``reused``, ``failed`` or ``blocked`` (a step it reads failed).
    status: str
    key: str | None = None
    folder: Path | None = None
    #: Key → the file or folder it names (absolute).
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    error: SparsecheckError | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.step.id,
            "nodeid": self.step.nodeid,
            "action": self.step.action,
            "location": str(self.step.location),
            "status": self.status,
            "key": self.key,
            "folder": str(self.folder) if self.folder else None,
            "outputs": {key: str(path) for key, path in self.outputs.items()},
            "seconds": round(self.seconds, 3),
            "message": self.message,
            **self.details,
        }
