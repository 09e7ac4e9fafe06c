"""The outcome of one check: status, value, the metric result and a message."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from sparsecheck.metrics._api import MetricResult, Scalar
from sparsecheck.spec._model import Check


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    ERROR = "ERROR"
    SKIP = "SKIP"


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
    duration: float = 0.0
    #: For ERROR: ``usage`` (bad input, exit 4) or ``internal`` (a bug, exit 3).
    error_kind: str | None = None
    cached: bool = False
    #: The value the check showed in the baseline (``--baseline``), None without one.
    baseline: Scalar = None

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
            "message": self.message,
            "duration": self.duration,
            "cached": self.cached,
            "result": self.result.to_dict() if self.result else None,
        }
