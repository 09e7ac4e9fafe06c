"""The run of one session: collect, select, run the steps, run the pass, judge, report, exit status."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from sparsecheck._config import Config, Session
from sparsecheck.engine._baseline import session_baseline
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.errors import SparsecheckError, UsageError
from sparsecheck.exitcodes import ExitCode
from sparsecheck.metrics._api import MetricResult
from sparsecheck.reports._filereport import stdout_taken
from sparsecheck.spec._model import Check


def run_session(config: Config, paths: Sequence[Path] = (), checks: Sequence[Check] | None = None) -> Session:
    """Run checks (collected from ``paths``, or given) through every hook; the session holds
    the outcomes and ``exitstatus``.

    Usage errors raised before any check runs (bad spec, bad option) propagate as
    :class:`~sparsecheck.errors.UsageError`; errors of single checks become ERROR outcomes.
    Checks that selected checks reference (``{check: ID}``) are computed even when deselected,
    but not reported.
    """
    hook = config.hook
    if checks is None:
        from sparsecheck.spec._collect import collect

        checks = collect(config, paths)
    selected = list(checks)
    hook.sparsecheck_collection_modifyitems(config=config, checks=selected)
    session = Session(config, checks=selected)
    if not selected:
        session.exitstatus = ExitCode.NO_CHECKS_COLLECTED
        _finish(session)
        return session
    hook.sparsecheck_sessionstart(session=session)
    try:
        from sparsecheck.engine._steps import prepare_checks
        from sparsecheck.spec._references import referenced_checks

        prepared = prepare_checks(session, [*selected, *referenced_checks(selected, among=checks)])
        results: dict[str, MetricResult | BaseException] = dict(prepared.errors)
        reported = {check.nodeid for check in selected}
        exitfirst = bool(config.getoption("exitfirst"))
        for batch in _batches(config, prepared.checks):
            for outcome in _run_batch(session, batch, results, reported):
                session.outcomes.append(outcome)
                hook.sparsecheck_check_report(outcome=outcome)
                if exitfirst and outcome.status in _FAILING:
                    break  # -x: the first failing check is the last one reported
            if exitfirst and any(o.status in _FAILING for o in session.outcomes):
                break
        session.exitstatus = exit_status(session.outcomes, bool(config.getoption("strict_warnings")))
    except KeyboardInterrupt:
        click.echo("sparsecheck: interrupted", err=True)
        session.exitstatus = ExitCode.INTERRUPTED
    _finish(session)
    return session


_FAILING = (Status.FAIL, Status.ERROR)


def _batches(config: Config, checks: list[Check]) -> list[list[Check]]:
    """One batch for the whole session, or with ``-x`` one batch per set of checkpoints read,
    so a failure stops before the next checkpoints are read; checks linked by references
    (``{check: ID}``) share a batch."""
    if not config.getoption("exitfirst"):
        return [checks]
    keys = {check.nodeid: _checkpoints_read(config, check) for check in checks}
    merged: dict[tuple[str, ...], tuple[str, ...]] = {}

    def root(key: tuple[str, ...]) -> tuple[str, ...]:
        while key in merged:
            key = merged[key]
        return key

    for check in checks:
        for nodeid in check.references:
            if nodeid in keys and root(keys[nodeid]) != root(keys[check.nodeid]):
                merged[root(keys[nodeid])] = root(keys[check.nodeid])
    batches: dict[tuple[str, ...], list[Check]] = {}
    for check in checks:
        batches.setdefault(root(keys[check.nodeid]), []).append(check)
    return list(batches.values())


def _checkpoints_read(config: Config, check: Check) -> tuple[str, ...]:
    """The identities of the checkpoints ``check`` reads (not its spec's whole table)."""
    from sparsecheck.engine._plan import reader_id

    keys = config.metric(check.metric).checkpoints(check.args)
    refs = [check.checkpoints[key] for key in keys if key in check.checkpoints]
    return tuple(sorted({reader_id(ref, check.spec_path.parent) for ref in refs}))


def _run_batch(
    session: Session,
    checks: list[Check],
    results: dict[str, MetricResult | BaseException],
    reported: Container[str],
) -> list[CheckOutcome]:
    """Compute the batch's checks not in ``results`` (the session's, step errors included) into
    it, then judge the ``reported`` ones."""
    hook = session.config.hook
    to_run = [c for c in checks if c.skip is None and c.nodeid not in results]
    if to_run:
        results.update(hook.sparsecheck_run_checks(session=session, checks=to_run))
    outcomes = []
    for check in checks:
        if check.nodeid not in reported:
            continue
        if check.skip is not None:
            outcomes.append(CheckOutcome(check, Status.SKIP, message=check.skip))
        else:
            outcomes.append(judge(session, check, results))
    return outcomes


def judge(
    session: Session, check: Check, results: Mapping[str, MetricResult | BaseException]
) -> CheckOutcome:
    """The outcome of ``check`` from its computed result (an error, or judged by the
    ``sparsecheck_evaluate`` hook), with its duration and whether it came from the cache."""
    result = results[check.nodeid]
    if isinstance(result, BaseException):
        outcome = error_outcome(check, result)
    else:
        outcome = session.config.hook.sparsecheck_evaluate(
            check=check, result=result, results=results, baseline=session_baseline(session.config)
        )
    outcome.duration = session.durations.get(check.nodeid, 0.0)
    outcome.cached = check.nodeid in session.cached
    return outcome


def error_outcome(check: Check, error: BaseException) -> CheckOutcome:
    """An ERROR outcome: a user error names its culprit; anything else is an internal error."""
    if isinstance(error, UsageError):
        return CheckOutcome(check, Status.ERROR, message=str(error), error_kind="usage")
    kind = (
        "usage"
        if isinstance(error, SparsecheckError) and error.exit_code == ExitCode.USAGE_ERROR
        else "internal"
    )
    text = str(error) if isinstance(error, SparsecheckError) else f"{type(error).__name__}: {error}"
    return CheckOutcome(check, Status.ERROR, message=f"{check.metric}: {text}", error_kind=kind)


def exit_status(outcomes: Sequence[CheckOutcome], strict_warnings: bool) -> ExitCode:
    """Internal error > usage error > failure (or warning, when strict) > OK."""
    kinds = {o.error_kind for o in outcomes if o.status is Status.ERROR}
    if "internal" in kinds:
        return ExitCode.INTERNAL_ERROR
    if "usage" in kinds:
        return ExitCode.USAGE_ERROR
    failing = {Status.FAIL, Status.WARN} if strict_warnings else {Status.FAIL}
    if any(o.status in failing for o in outcomes):
        return ExitCode.CHECKS_FAILED
    return ExitCode.OK


def _finish(session: Session) -> None:
    hook = session.config.hook
    hook.sparsecheck_sessionfinish(session=session, exitstatus=int(session.exitstatus))
    err = stdout_taken(session.config)  # a report writes to stdout: the summary goes to stderr
    hook.sparsecheck_terminal_summary(session=session, write=lambda text: click.echo(text, err=err))


def run_specs(
    paths: Sequence[Path],
    options: Mapping[str, Any] | None = None,
    plugin_names: Sequence[str] = (),
    plugins: Sequence[object] = (),
) -> Session:
    """Run spec files like ``sparsecheck run`` and return the session (its outcomes, exit status).

    ``options`` are ``run``'s option values by dest name (``{"vars": {...}, "json_path": ...}``);
    ``plugin_names`` are ``-p`` values, ``plugins`` plugin objects registered first.  Usage
    errors raise, like the CLI's exit 4.
    """
    from sparsecheck._manager import get_plugin_manager, register

    pm = get_plugin_manager(plugin_names)
    for index, plugin in enumerate(plugins):
        register(pm, plugin, name=getattr(plugin, "__name__", f"plugin-{index}"))
    config = Config(pm, options)
    configure(config)
    try:
        return run_session(config, paths=[Path(p) for p in paths])
    finally:
        unconfigure(config)


def configure(config: Config) -> None:
    """Call ``sparsecheck_configure`` (historic: later plugins are configured on register)."""
    config.hook.sparsecheck_configure.call_historic(kwargs={"config": config})


def unconfigure(config: Config) -> None:
    config.hook.sparsecheck_unconfigure(config=config)
