"""``sparsecheck validate``: every spec file loaded without reading a checkpoint, each problem one
``path:line:col: message`` line, and optionally whether local checkpoint paths exist.

A problem in one file does not stop the others from being checked, nor, within a file, an error
in one ``checks:`` entry the other entries (an error in the file's structure, ``vars``,
``checkpoints``, ``steps`` or ``templates`` does: what follows depends on it). An unset
``${env:NAME}`` is a warning (CI jobs that lint specs rarely have the variables of the job that
runs them), and the file is checked with ``$NAME`` in its place. ``check_paths`` resolves each
checkpoint of a spec's table as ``run`` does (relative paths from the spec file's folder); what
``run`` does not read as a local path (a step's output, a URL, a hub id: ``org/name`` with no
``org/`` folder there, or with a ``revision``; a path built from an unset variable) is not
checked, only counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from sparsecheck._config import Config
from sparsecheck._paths import absolute_path
from sparsecheck.checkpoints._hub import HUB_ID
from sparsecheck.checkpoints._remote import URL
from sparsecheck.errors import Location, UsageError
from sparsecheck.exitcodes import ExitCode
from sparsecheck.spec._collect import load_file, spec_files
from sparsecheck.spec._loader import SpecProblems
from sparsecheck.spec._model import CheckpointRef, SpecFile

#: What ``--check-paths`` does not check, in the order the summary counts them.
NOT_LOCAL = ("step output", "URL", "hub id", "path with an unset variable")


@dataclass(frozen=True)
class Finding:
    """One problem: an error, or a warning that does not change the exit code."""

    location: Location | str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.location}: {'warning: ' if self.warning else ''}{self.message}"

    def github(self) -> str:
        """The finding as a GitHub Actions workflow command, shown at its line in a pull request."""
        from sparsecheck.reports.annotations import escape_data, escape_property

        location = self.location if isinstance(self.location, Location) else Location(self.location)
        properties = {"file": location.file, "line": location.line, "col": location.column}
        shown = ",".join(f"{k}={escape_property(str(v))}" for k, v in properties.items() if v is not None)
        return f"::{'warning' if self.warning else 'error'} {shown}::{escape_data(self.message)}"


@dataclass
class LintResult:
    """What ``validate`` found over all the files it read."""

    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    checks: int = 0
    #: Spec files with at least one error.
    failed_files: set[str] = field(default_factory=set)
    #: With ``check_paths``: local checkpoint paths found, and what was not checked by kind.
    paths_found: int = 0
    not_checked: Counter[str] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return sum(not f.warning for f in self.findings)

    @property
    def exit_code(self) -> ExitCode:
        if self.errors:
            return ExitCode.USAGE_ERROR
        return ExitCode.OK if self.checks else ExitCode.NO_CHECKS_COLLECTED

    def summary(self, check_paths: bool) -> str:
        """The closing line: ``ok: N checks in M spec files`` or ``failed: N errors in K of M
        spec files``, then the warnings and, with ``check_paths``, the paths found and not checked."""
        if self.errors:
            failed = len(self.failed_files)
            parts = [f"failed: {_count(self.errors, 'error')} in {failed} of {self.files} spec files"]
        else:
            parts = [f"ok: {self.checks} checks in {self.files} spec files"]
        warnings = len(self.findings) - self.errors
        if warnings:
            parts.append(_count(warnings, "warning"))
        if check_paths:
            parts.append(f"{_count(self.paths_found, 'local checkpoint path')} found")
            if self.not_checked:
                kinds = [kind for kind in NOT_LOCAL if kind in self.not_checked]
                parts.append("not checked: " + ", ".join(_count(self.not_checked[k], k) for k in kinds))
        return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def lint(
    pluginmanager: pluggy.PluginManager,
    paths: Sequence[Path],
    check_paths: bool = False,
    variables: Mapping[str, Any] | None = None,
) -> LintResult:
    """Load every spec file under ``paths`` with the plugins of ``pluginmanager`` (and
    ``variables``, as ``--var`` gives them) and collect each file's problems, in file and line
    order."""
    problems = SpecProblems()
    config = Config(pluginmanager, {"spec_problems": problems, "vars": variables})
    result = LintResult()
    existing = []
    for path in paths:
        if path.exists():
            existing.append(path)
        else:
            result.findings.append(Finding(str(path), "no such file or folder"))
    for file, explicit in spec_files(config, existing):
        seen_unset, seen_errors = len(problems.unset_env), len(problems.errors)
        stopped: list[UsageError] = []
        try:
            spec = load_file(config, file, explicit)
        except UsageError as exc:
            spec, stopped = None, [exc]
        errors = [*problems.errors[seen_errors:], *stopped]
        found = [Finding(error.location or str(file), error.message) for error in errors]
        unset = problems.unset_env[seen_unset:]
        for variable in unset:
            message = f"environment variable {variable.name!r} is not set (checked as {variable.placeholder})"
            found.append(Finding(variable.location, message, warning=True))
        if spec is not None:
            result.checks += len(spec.checks)
            if check_paths:
                found += _check_paths(spec, [variable.placeholder for variable in unset], result)
        if spec is not None or found:
            result.files += 1
        if any(not finding.warning for finding in found):
            result.failed_files.add(str(file))
        result.findings += sorted(dict.fromkeys(found), key=_line_order)  # a template's error once
    return result


def _line_order(finding: Finding) -> tuple[int, int]:
    location = finding.location
    if isinstance(location, str):
        return (0, 0)
    return (location.line or 0, location.column or 0)


def _check_paths(spec: SpecFile, placeholders: Sequence[str], result: LintResult) -> list[Finding]:
    """A finding for each local checkpoint path of ``spec``'s table that does not exist, as
    ``run`` resolves it; what is found or not checked is counted in ``result``."""
    spec_dir = absolute_path(spec.path.parent)
    found = []
    for key, ref in spec.checkpoints.items():
        kind = _not_local(ref, placeholders)
        local = absolute_path(ref.source, spec_dir)
        if kind is None and not local.exists() and HUB_ID.fullmatch(ref.source) and not local.parent.is_dir():
            kind = "hub id"  # org/name with no org/ folder here: `run` reads it as a hub id
        if kind is not None:
            result.not_checked[kind] += 1
        elif local.exists():
            result.paths_found += 1
        else:
            message = f"checkpoints.{key}: {ref.source}: no such file or folder (looked for {local})"
            found.append(Finding(ref.location, message))
    return found


def _not_local(ref: CheckpointRef, placeholders: Sequence[str]) -> str | None:
    """What ``ref`` names when it is not a local path ``run`` would read, else None."""
    if ref.step is not None:
        return "step output"
    if URL.fullmatch(ref.source):
        return "URL"
    if ref.revision is not None:
        return "hub id"
    if any(placeholder in ref.source for placeholder in placeholders):
        return "path with an unset variable"
    return None
