"""pytest collects spec files: each check is one test item (entry point ``pytest11``).

Naming rule: files named ``*.sparsecheck.yaml`` / ``*.sparsecheck.yml`` (the ini option
``sparsecheck_patterns`` changes it).  All selected checks of a session share one read pass,
run when the first of them runs; each item then judges its own result.  The checks that
selected checks reference (``{check: ID}``) are computed too, even when deselected.

pytest imports this module at every start in an environment with sparsecheck installed, so it
imports sparsecheck's engine only once it meets a spec file (or a ``--sparsecheck-*`` option).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sparsecheck.errors import SparsecheckError
from sparsecheck.spec._naming import SPEC_GLOBS

if TYPE_CHECKING:
    from sparsecheck._config import Config, Session
    from sparsecheck.engine._outcome import CheckOutcome
    from sparsecheck.spec._model import Check

_CONFIG_KEY: pytest.StashKey[Config] = pytest.StashKey()
_RESULTS_KEY = pytest.StashKey[dict[str, Any]]()
_SESSION_KEY: pytest.StashKey[Session] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "sparsecheck_patterns",
        type="args",
        default=list(SPEC_GLOBS),
        help="glob patterns of the spec files sparsecheck collects",
    )
    parser.getgroup("sparsecheck").addoption(
        "--sparsecheck-plugin",
        action="append",
        default=[],
        metavar="NAME",
        dest="sparsecheck_plugins",
        help="load sparsecheck plugin NAME (no:NAME disables one)",
    )
    parser.getgroup("sparsecheck").addoption(
        "--sparsecheck-workers",
        type=int,
        default=None,
        metavar="N",
        dest="sparsecheck_workers",
        help="worker processes for sparsecheck's read pass (default: one per core for large passes; "
        "1 under pytest-xdist)",
    )
    group = parser.getgroup("sparsecheck")
    for flag, (dest, metavar, help) in FORWARDED.items():
        group.addoption(flag, dest=f"sparsecheck_{dest}", metavar=metavar, default=None, help=help)
    group.addoption(
        "--sparsecheck-var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="sparsecheck_vars",
        help="set a spec variable (${NAME}); VALUE is read as YAML",
    )
    group.addoption(
        "--sparsecheck-strict-warnings",
        action="store_true",
        dest="sparsecheck_strict_warnings",
        help="a check that WARNs fails its test",
    )
    group.addoption(
        "--sparsecheck-baseline-missing",
        choices=("error", "skip"),
        default=None,
        dest="sparsecheck_baseline_missing",
        help="a check whose {baseline: …} has no value: error (default) or skip",
    )


#: pytest options with a value that set a ``sparsecheck run`` option: flag → (its dest, metavar, help).
FORWARDED = {
    "--sparsecheck-cache-dir": (
        "cache_dir",
        "DIR",
        "sparsecheck's cache folder (default ./.sparsecheck_cache)",
    ),
    "--sparsecheck-baseline": ("baseline", "FILE", "compare with this baseline ({baseline: …} operands)"),
    "--sparsecheck-save-baseline": ("save_baseline", "FILE", "save every check's result as a baseline"),
    "--sparsecheck-history": ("history_path", "FILE", "append the run's results to this history file"),
    "--sparsecheck-label": ("label", "TEXT", "the run's name in --sparsecheck-history"),
    "--sparsecheck-json": ("json_path", "FILE", "write sparsecheck's JSON report"),
    "--sparsecheck-md": ("md_path", "FILE", "write sparsecheck's Markdown summary"),
    "--sparsecheck-html": ("html_path", "FILE", "write sparsecheck's HTML report"),
}


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("sparsecheck_vars"):
        _spec_vars(config)  # a malformed --sparsecheck-var stops pytest before collection


def _spec_vars(pytest_config: pytest.Config) -> dict[str, Any]:
    from sparsecheck.spec._variables import parse_assignments

    try:
        return parse_assignments(pytest_config.getoption("sparsecheck_vars"), "--sparsecheck-var")
    except SparsecheckError as exc:
        raise pytest.UsageError(str(exc)) from None


def _config(pytest_config: pytest.Config) -> Config:
    if _CONFIG_KEY not in pytest_config.stash:
        from sparsecheck._config import Config
        from sparsecheck._manager import get_plugin_manager
        from sparsecheck._session import configure

        pm = get_plugin_manager(pytest_config.getoption("sparsecheck_plugins") or ())
        pm.set_blocked("terminal")  # pytest reports the checks; the file reports name themselves
        try:
            config = Config(
                pm, run_options(pytest_config), invocation_dir=pytest_config.invocation_params.dir
            )
            configure(config)
        except SparsecheckError as exc:
            raise pytest.UsageError(str(exc)) from None
        pytest_config.stash[_CONFIG_KEY] = config
    return pytest_config.stash[_CONFIG_KEY]


def run_options(pytest_config: pytest.Config) -> dict[str, Any]:
    """The ``sparsecheck run`` options the pytest options set."""
    # pytest shows the checks; at its default verbosity the file reports name their files.
    verbosity = min(pytest_config.get_verbosity(), 0)
    options: dict[str, Any] = {"verbosity": verbosity, "workers": workers_option(pytest_config)}
    for dest, *_ in FORWARDED.values():
        value = pytest_config.getoption(f"sparsecheck_{dest}")
        if value is not None:
            options[dest] = value if dest == "label" else Path(value)
    options["strict_warnings"] = pytest_config.getoption("sparsecheck_strict_warnings")
    options["baseline_missing"] = pytest_config.getoption("sparsecheck_baseline_missing")
    options["vars"] = _spec_vars(pytest_config)
    return options


def workers_option(pytest_config: pytest.Config) -> int | None:
    """``--sparsecheck-workers``; without it, one process under pytest-xdist (whose own workers
    already use the cores), else sparsecheck's default."""
    given: int | None = pytest_config.getoption("sparsecheck_workers")
    if given is not None:
        if given < 1:
            raise pytest.UsageError(f"--sparsecheck-workers must be at least 1, got {given}")
        return given
    return 1 if "PYTEST_XDIST_WORKER" in os.environ else None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SpecFileNode | None:
    patterns = parent.config.getini("sparsecheck_patterns")
    if any(fnmatch.fnmatch(file_path.name, p) for p in patterns):
        node: SpecFileNode = SpecFileNode.from_parent(parent, path=file_path)
        return node
    return None


class SpecFileNode(pytest.File):
    """A spec file; its checks are the items."""

    def collect(self) -> Iterator[CheckItem]:
        from sparsecheck.spec._collect import collect

        config = _config(self.config)
        try:
            checks = collect(config, [self.path])  # the folder's local plugin file first
        except SparsecheckError as exc:
            raise self.CollectError(str(exc)) from None
        for check in checks:
            item: CheckItem = CheckItem.from_parent(self, name=check.id, check=check, spec_checks=checks)
            _declare_marks(self.config, check.marks)
            for mark in check.marks:
                item.add_marker(mark)
            if check.skip is not None:  # reported at the check's line in the spec
                item.add_marker(pytest.mark.skip(reason=check.skip))
            yield item


def _declare_marks(config: pytest.Config, marks: Iterable[str]) -> None:
    """Declare the spec's marks to pytest (no unknown-mark warning; ``--strict-markers`` works)."""
    known = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    for mark in marks:
        if mark not in known:
            config.addinivalue_line("markers", f"{mark}: a mark of sparsecheck checks")
            known.add(mark)


class CheckItem(pytest.Item):
    """One check of a spec file."""

    def __init__(self, *, check: Check, spec_checks: Sequence[Check], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        #: Every check of its spec file (those it references may be deselected).
        self.spec_checks = spec_checks

    def runtest(self) -> None:
        from sparsecheck.engine._outcome import Status

        outcome = self._outcome()
        config = _config(self.config)
        config.hook.sparsecheck_check_report(outcome=outcome)
        failing = (
            (Status.FAIL, Status.ERROR, Status.WARN)
            if config.getoption("strict_warnings")
            else (Status.FAIL, Status.ERROR)
        )
        if outcome.status in failing:
            raise CheckFailed(outcome)
        if outcome.status is Status.SKIP:
            pytest.skip(outcome.message)
        if outcome.status is Status.WARN:
            import warnings

            message = f"{self.check.id}: {outcome.message}"
            warnings.warn_explicit(message, UserWarning, str(self.path), self.check.location.line or 0)

    def _outcome(self) -> CheckOutcome:
        config = _config(self.config)
        results = self.session.stash.setdefault(_RESULTS_KEY, {})
        if self.check.nodeid not in results:
            from sparsecheck._config import Session
            from sparsecheck.engine._steps import prepare_checks
            from sparsecheck.spec._references import referenced_checks

            items = [i for i in self.session.items if isinstance(i, CheckItem)]
            pending = [i.check for i in items if i.check.skip is None]
            pending += referenced_checks(pending, among=(c for i in items for c in i.spec_checks))
            session = Session(config, checks=pending)
            self.config.stash[_SESSION_KEY] = session
            prepared = prepare_checks(session, pending)  # spec steps first
            results.update(prepared.errors)
            results.update(config.hook.sparsecheck_run_checks(session=session, checks=prepared.runnable))
        from sparsecheck._session import judge

        return judge(self.config.stash[_SESSION_KEY], self.check, results)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailed):
            from sparsecheck.reports._table import expectation_text, value_label

            o = excinfo.value.outcome
            lines = [f"{o.status.value}: {o.message}"]
            if o.expectation or o.warn_expectation:
                lines.append(f"  expected: {expectation_text(o)}")
            lines.append(f"  value:    {value_label(o)}")
            if o.baseline is not None:
                change = "" if o.delta is None else f" (change {o.delta:+.6g})"
                lines.append(f"  baseline: {o.baseline}{change}")
            lines.append(f"  spec:     {self.check.location}")
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.check.location.line
        return self.path, None if line is None else line - 1, f"{self.check.metric}: {self.check.id}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write sparsecheck's file reports (``--sparsecheck-json`` …, the baseline, the history)."""
    checks = session.config.stash.get(_SESSION_KEY, None)
    if checks is None:
        return
    from sparsecheck._session import exit_status

    status = exit_status(checks.outcomes, bool(checks.config.getoption("strict_warnings")))
    checks.config.hook.sparsecheck_sessionfinish(session=checks, exitstatus=int(status))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    checks = config.stash.get(_SESSION_KEY, None)
    if checks is not None:
        checks.config.hook.sparsecheck_terminal_summary(session=checks, write=terminalreporter.write_line)


def pytest_unconfigure(config: pytest.Config) -> None:
    sparsecheck_config = config.stash.get(_CONFIG_KEY, None)
    if sparsecheck_config is not None:
        from sparsecheck._session import unconfigure

        unconfigure(sparsecheck_config)


class CheckFailed(Exception):
    """Raised by a check item whose check failed or errored."""

    def __init__(self, outcome: CheckOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome
