"""Saved baselines: ``--save-baseline FILE`` writes what every check measured, ``--baseline FILE``
loads it for ``{baseline: …}`` operands and for the baseline value and delta every report shows.

A baseline file is meant to be committed next to the specs: JSON with sorted keys, small (no
tensors)::

    {"format": "sparsecheck-baseline", "format_version": 1, "created", "sparsecheck_version",
     "plugins": {distribution: version},
     "checkpoints": [{"source", "format", "fingerprint"}, ...],
     "checks": {nodeid: {"metric", "status", "value", "value_field", "fields",
                         "groups": {per: {group: fields}}}}}

Checks are keyed by nodeid (``<spec path>::<id>``, the spec path relative to the folder
sparsecheck runs from), so a baseline is compared from the folder it was saved from.  ``value``
is the number the check showed (its first expectation's field, or the share of passing groups
under ``per:``); ``fields`` are the whole result's; ``groups`` hold only the granularity of the
check's ``per:``.  A check that errored or was skipped is not saved.

``--baseline-missing skip`` turns the ERROR of a check whose ``{baseline: …}`` has nothing to
compare with (no ``--baseline``, a baseline file that does not exist yet, or a check or group
absent from it) into a SKIP: the first run of a new gate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

import sparsecheck
from sparsecheck._config import Config, OptionRegistry, Session
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Scalar
from sparsecheck.reports._filereport import FileReport
from sparsecheck.reports.json_report import strict_json
from sparsecheck.spec._model import Check

FORMAT = "sparsecheck-baseline"
FORMAT_VERSION = 1
MISSING_CHOICES = ("error", "skip")


@dataclass(frozen=True)
class BaselineEntry:
    """One check as the baseline saved it."""

    value: Scalar
    value_field: str
    fields: Mapping[str, Scalar]
    #: ``{per: {group: fields}}``, only the check's ``per:`` granularity.
    groups: Mapping[str, Mapping[str, Mapping[str, Scalar]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Baseline:
    """The checks of a loaded baseline file by nodeid (none when no ``--baseline`` was given or
    its file does not exist yet), and what a missing one makes of a check."""

    path: Path | None = None
    checks: Mapping[str, BaselineEntry] = field(default_factory=dict)
    #: ``error`` or ``skip``: the status of a check whose ``{baseline: …}`` has no value.
    on_missing: str = "error"

    def entry(self, check: Check) -> BaselineEntry | None:
        return self.checks.get(check.nodeid)

    def missing(self, check: Check) -> str:
        """Why ``check`` has no baseline entry, for its ERROR or SKIP message."""
        if self.path is None:
            return "the check compares with {baseline: …} but no --baseline FILE was given"
        if not self.checks and not self.path.exists():
            return f"baseline file {self.path} does not exist (write it with --save-baseline)"
        return f"check {check.id!r} is not in baseline {self.path} (saved before the check existed?)"


def load_baseline(path: Path, on_missing: str = "error") -> Baseline:
    """Read a baseline file; a missing one is an empty baseline when ``on_missing`` is
    ``skip``, else a UsageError, as is anything that is not a baseline file."""
    where = f"option --baseline: {path}"
    if not path.exists() and on_missing == "skip":
        return Baseline(path, {}, on_missing)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file (write it with --save-baseline)") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{where}: not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError(f'{where}: not a sparsecheck baseline (no "format": "{FORMAT}")')
    if document.get("format_version") != FORMAT_VERSION:
        raise UsageError(
            f"{where}: baseline format version {document.get('format_version')!r} "
            f"(this sparsecheck reads {FORMAT_VERSION})"
        )
    try:
        checks = {
            nodeid: BaselineEntry(
                value=entry["value"],
                value_field=entry["value_field"],
                fields=entry["fields"],
                groups=entry.get("groups", {}),
            )
            for nodeid, entry in document["checks"].items()
        }
    except (KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{where}: malformed check entry ({type(exc).__name__}: {exc})") from None
    return Baseline(path, checks, on_missing)


def session_baseline(config: Config) -> Baseline:
    """The baseline ``--baseline`` names (loaded once per config), or an empty one."""
    loaded = config.stash.get("baseline")
    if not isinstance(loaded, Baseline):
        path = config.getoption("baseline")
        on_missing = config.getoption("baseline_missing", "error")
        loaded = Baseline(on_missing=on_missing) if path is None else load_baseline(Path(path), on_missing)
        config.stash["baseline"] = loaded
    return loaded


def baseline_document(session: Session, outcomes: list[CheckOutcome]) -> dict[str, Any]:
    """What ``--save-baseline`` writes."""
    checks = {}
    for outcome in outcomes:
        result = outcome.result
        if result is None:
            continue
        per = outcome.check.per
        entry: dict[str, Any] = {
            "metric": outcome.check.metric,
            "status": outcome.status.value,
            "value": outcome.value,
            "value_field": result.value_field,
            "fields": dict(result.fields),
        }
        if per is not None and per in result.groups:
            entry["groups"] = {per: result.groups[per]}
        checks[outcome.check.nodeid] = entry
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sparsecheck_version": sparsecheck.__version__,
        "plugins": plugin_versions(session.config),
        "checkpoints": [
            {key: info.get(key) for key in ("source", "format", "fingerprint")}
            for info in session.checkpoints.values()
        ],
        "checks": checks,
    }


def plugin_versions(config: Config) -> dict[str, str]:
    """The distributions of the plugins loaded from entry points, with their versions."""
    return {dist.project_name: dist.version for _, dist in config.pluginmanager.list_plugin_distinfo()}


class BaselineWriter(FileReport):
    """``--save-baseline FILE``: the file written when the session finishes."""

    plugin_name = "baseline-writer"
    flag = "--save-baseline"
    dest = "save_baseline"
    title = "Baseline"

    def render(self, session: Session, exitstatus: int) -> bytes:
        document = strict_json(baseline_document(session, self.outcomes))
        text = json.dumps(
            document, indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False, default=str
        )
        return (text + "\n").encode("utf-8")


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    BaselineWriter.add_option(
        options, "save every check's result to FILE as the baseline later runs compare with (--baseline)"
    )
    options.add(
        "--baseline",
        "baseline",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="compare with the baseline FILE: {baseline: …} operands; reports show its value and the delta",
    )
    options.add(
        "--baseline-missing",
        "baseline_missing",
        type=click.Choice(MISSING_CHOICES),
        default=None,
        help="a check whose {baseline: …} has no value (no --baseline, no file yet, check not in it): "
        "error (default) or skip",
    )


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    session_baseline(config)  # a bad --baseline file stops the run before any check
    BaselineWriter.configure(config)
