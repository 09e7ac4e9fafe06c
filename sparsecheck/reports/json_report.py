"""``--json FILE``: every check's outcome and result, and the checkpoints read, as strict JSON.

Shape (keys in this order)::

    {"schema_version", "sparsecheck_version", "created", "duration", "exitstatus",
     "summary": {"passed", "failed", "warned", "errors", "skipped", "deselected", "total"},
     "checkpoints": [{"source", "path", "format", "dtypes", "fingerprint", "keys"}, ...],
     "steps": [StepRecord.to_dict(), ...],
     "checks": [{**CheckOutcome.to_dict(), "value_label"}, ...]}

A check's ``value_label`` is its value as the terminal table shows it (``4/5 layers`` under
``per:``, ``o1=0.4999`` for a field other than the primary value); ``warn`` its ``warn:``
thresholds as text.  A checkpoint's ``keys`` are the spec keys that named it (``base``, ``rl``).

``steps`` lists the spec steps the checks read (see :mod:`sparsecheck.engine._steps`).

Not-a-number and infinite values become ``null``; paths and other objects become strings.
Its JSON Schema ships as ``report.schema.json`` (``sparsecheck validate --report-schema``);
``schema_version`` rises when a key is removed or retyped (new optional keys may appear).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck._version import __version__
from sparsecheck.reports._filereport import FileReport
from sparsecheck.reports._table import COUNT_NAMES, status_counts, value_label

#: The version of the report's shape (``report.schema.json``).
SCHEMA_VERSION = 1


def report_schema_path() -> Path:
    """Where the JSON Schema of the report is installed."""
    return Path(__file__).with_name("report.schema.json")


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None and tuples by lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


class JsonReport(FileReport):
    plugin_name = "json-report"
    flag = "--json"
    dest = "json_path"
    title = "JSON report"

    def document(self, session: Session, exitstatus: int) -> dict[str, Any]:
        counts = status_counts(self.outcomes)
        summary: dict[str, int] = {COUNT_NAMES[s]: n for s, n in counts.items()}
        summary["deselected"] = len(session.config.deselected)
        summary["total"] = len(self.outcomes)
        return {
            "schema_version": SCHEMA_VERSION,
            "sparsecheck_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration": round(time.time() - session.started, 3),
            "exitstatus": exitstatus,
            "summary": summary,
            "checkpoints": list(session.checkpoints.values()),
            "steps": [record.to_dict() for record in session.steps.values()],
            "checks": [{**o.to_dict(), "value_label": value_label(o)} for o in self.outcomes],
        }

    def render(self, session: Session, exitstatus: int) -> bytes:
        document = strict_json(self.document(session, exitstatus))
        text = json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False, default=str)
        return (text + "\n").encode("utf-8")


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    JsonReport.add_option(options, "write a JSON report of every check and checkpoint to FILE")


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    JsonReport.configure(config)
