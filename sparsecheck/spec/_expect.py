"""Judging a metric result against a check's ``expect``/``warn``/``per``/``mostly``.

Without ``per`` every ``expect`` must hold on the result's fields (PASS, else FAIL); when they
hold but a ``warn`` expectation does not, the check WARNs.  With ``per: G`` the expectations
apply to each group of granularity ``G``; the check passes when the share of passing groups is
at least ``mostly`` (default 1), and its value is that share.  A check without ``expect`` is a
measurement and passes.  A field the result lacks is an ERROR (bad input), naming the fields
it has.

A ``{check: ID}`` operand compares with another check's result, taken from ``results`` (the
session's results by nodeid): its primary value or ``field``, times ``times``, plus the offset.
The check is an ERROR, naming the referenced check, when that check errored, was skipped or
lacks the field.  Under ``per`` every group is compared with that one number.

A ``{baseline: true | FIELD}`` operand compares with this same check's result in the baseline
(``--baseline FILE``, :mod:`sparsecheck.engine._baseline`); under ``per`` each group with its
own group there.  When the baseline has no value for it, the check is an ERROR (a SKIP under
``--baseline-missing skip``).  Whenever the baseline holds the check, the outcome carries the
baseline's value, so reports show it and the delta.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.errors import Location, SparsecheckError
from sparsecheck.metrics._api import MetricResult, Scalar
from sparsecheck.spec._model import BaselineRef, Check, CheckRef, Expectation, FieldRef, Operand

if TYPE_CHECKING:
    from sparsecheck.engine._baseline import Baseline, BaselineEntry

_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
#: A session's metric results by nodeid; an exception where a metric could not be computed.
Results = Mapping[str, MetricResult | BaseException]
#: Failing groups a FAIL message names.
_WORST_SHOWN = 3


class _FieldProblem(Exception):
    """An expectation names a field the result does not have, or one that is not a number, or
    a check whose result is missing."""


class _NoBaseline(Exception):
    """A ``{baseline: …}`` operand has no value in the baseline (ERROR, or SKIP if asked)."""


@dataclass(frozen=True)
class _Operands:
    """What the reference operands of one check compare with: each ``{check: ID}``'s value, and
    the baseline's fields for ``{baseline: …}`` (the group's under ``per``)."""

    referenced: Mapping[CheckRef, float]
    baseline: Mapping[str, Scalar] | None = None
    baseline_value_field: str = ""
    #: Where the baseline fields come from, for messages.
    baseline_where: str = "the baseline"
    #: Under ``per``: the baseline's groups of that granularity.
    baseline_groups: Mapping[str, Mapping[str, Scalar]] | None = None


@dataclass(frozen=True)
class _Verdict:
    """One expectation on one set of fields."""

    holds: bool
    #: How far the value is from holding (larger is worse; inf for NaN).
    shortfall: float
    #: Why it fails, e.g. ``value 0.62 is not > 0.7``.
    reason: str
    location: Location


@hookimpl
def sparsecheck_evaluate(
    check: Check, result: MetricResult, results: Results, baseline: Baseline | None
) -> CheckOutcome:
    return evaluate(check, result, results, baseline)


def evaluate(
    check: Check, result: MetricResult, results: Results | None = None, baseline: Baseline | None = None
) -> CheckOutcome:
    """Judge ``result`` against ``check``'s expectations; ``results`` (by nodeid) hold the
    results of the checks it references, ``baseline`` the saved results ``{baseline: …}``
    operands compare with."""
    entry = baseline.entry(check) if baseline is not None else None
    outcome = _evaluate(check, result, results or {}, baseline, entry)
    outcome.warn_expectation = describe_warn(check)
    if outcome.groups_passed is None and outcome.value is not None:
        outcome.value_name = _shown_field(check, result)
    if entry is not None:
        outcome.baseline = entry.value
    return outcome


def _evaluate(
    check: Check,
    result: MetricResult,
    results: Results,
    baseline: Baseline | None,
    entry: BaselineEntry | None,
) -> CheckOutcome:
    expectation = describe(check)
    if check.skip is not None:
        return CheckOutcome(check, Status.SKIP, result, expectation=expectation, message=check.skip)
    try:
        operands = _operands(check, results, baseline, entry)
        if check.per is not None and check.per not in result.groups:
            return CheckOutcome(
                check,
                Status.ERROR,
                result,
                expectation=expectation,
                message=f"metric {check.metric!r} returned no per-{check.per} results "
                f"(it returned: {', '.join(result.groups) or 'none'})",
                error_kind="internal",
            )
        if check.per is None:
            outcome = _judge_whole(check, result, operands)
        else:
            outcome = _judge_groups(check, result, result.groups[check.per], operands)
    except _NoBaseline as exc:
        skip = baseline is not None and baseline.on_missing == "skip"
        return CheckOutcome(
            check,
            Status.SKIP if skip else Status.ERROR,
            result,
            value=_shown_value(check, result) if check.per is None else None,
            expectation=expectation,
            message=str(exc) + ("" if skip else " (--baseline-missing skip makes it a SKIP)"),
            error_kind=None if skip else "usage",
        )
    except _FieldProblem as exc:
        return CheckOutcome(
            check, Status.ERROR, result, expectation=expectation, message=str(exc), error_kind="usage"
        )
    outcome.expectation = expectation
    return outcome


def describe(check: Check) -> str:
    """The check's expectations as text: ``value > 0.7``, ``value >= 0.6 per layer, mostly 0.9``."""
    return _with_per(check, _joined(check.expect))


def describe_warn(check: Check) -> str:
    """The check's ``warn:`` thresholds as text: ``value > 0.8``; under ``per:`` they apply like
    the expectations, whose text says so (the thresholds' own does when there are none)."""
    text = _joined(check.warn)
    return text if check.expect else _with_per(check, text)


def _joined(expectations: Sequence[Expectation]) -> str:
    return " and ".join(expectation.describe() for expectation in expectations)


def _with_per(check: Check, text: str) -> str:
    if text and check.per is not None:
        text += f" per {check.per}" + (f", mostly {check.mostly:g}" if check.mostly is not None else "")
    return text


def _operands(
    check: Check, results: Results, baseline: Baseline | None, entry: BaselineEntry | None
) -> _Operands:
    """What ``check``'s reference operands compare with (the whole result's baseline fields)."""
    operands = _Operands(_referenced_values(check, results))
    if not check.baseline_refs:
        return operands
    if entry is None:
        raise _NoBaseline((baseline or _no_baseline()).missing(check))
    groups = None
    if check.per is not None:
        groups = entry.groups.get(check.per)
        if groups is None:
            raise _NoBaseline(
                f"the baseline of check {check.id!r} has no {check.per} groups (saved without per:?)"
            )
    return dataclasses.replace(
        operands,
        baseline=entry.fields,
        baseline_value_field=entry.value_field,
        baseline_where=f"the baseline of check {check.id!r}",
        baseline_groups=groups,
    )


def _no_baseline() -> Baseline:
    from sparsecheck.engine._baseline import Baseline

    return Baseline()


def _group_operands(check: Check, operands: _Operands, key: str) -> _Operands:
    """``operands`` for group ``key``: compared with the baseline's own group ``key``."""
    if operands.baseline_groups is None:
        return operands
    fields = operands.baseline_groups.get(key)
    if fields is None:
        raise _NoBaseline(f"{check.per} group {key!r} is not in the baseline of check {check.id!r}")
    where = f"the baseline's {check.per} group {key!r}"
    return dataclasses.replace(operands, baseline=fields, baseline_where=where)


def _referenced_values(check: Check, results: Results) -> dict[CheckRef, float]:
    """The value of each ``{check: ID}`` operand of ``check``, from the referenced results."""
    values = {}
    for ref in check.check_refs:
        other = results.get(check.nodeid_of(ref.check))
        if other is None:
            raise _FieldProblem(f"referenced check {ref.check!r} has no result (skipped or not run)")
        if isinstance(other, BaseException):
            text = str(other) if isinstance(other, SparsecheckError) else f"{type(other).__name__}: {other}"
            raise _FieldProblem(f"referenced check {ref.check!r} errored: {text}")
        where = f"the result of check {ref.check!r}"
        values[ref] = ref.apply(_number(other.fields, ref.field or other.value_field, where))
    return values


def _judge_whole(check: Check, result: MetricResult, operands: _Operands) -> CheckOutcome:
    where = f"the {result.metric} result"

    def failures(expectations: Sequence[Expectation]) -> list[str]:
        verdicts = (_judge(e, result.fields, result.value_field, where, operands) for e in expectations)
        return [f"{v.reason} ({_short(v.location)})" for v in verdicts if not v.holds]

    shown = _shown_value(check, result)
    failed = failures(check.expect)
    if failed:
        return CheckOutcome(check, Status.FAIL, result, value=shown, message="; ".join(failed))
    warned = failures(check.warn)
    if warned:
        return CheckOutcome(check, Status.WARN, result, value=shown, message="; ".join(warned))
    return CheckOutcome(check, Status.PASS, result, value=shown)


def _shown_value(check: Check, result: MetricResult) -> Scalar:
    """The number an outcome shows: the field its first expectation compares (``o1`` for
    ``{field: o1, gt: …}``), else the result's primary value."""
    return result.fields.get(_shown_field(check, result) or result.value_field, result.value)


def _shown_field(check: Check, result: MetricResult) -> str | None:
    """The field the first expectation compares, when it is not the result's primary value."""
    first = next(iter((*check.expect, *check.warn)), None)
    if first is None or first.field in (None, result.value_field) or first.field not in result.fields:
        return None
    return first.field


def _judge_groups(
    check: Check,
    result: MetricResult,
    groups: Mapping[str, Mapping[str, Scalar]],
    operands: _Operands,
) -> CheckOutcome:
    """The share of ``groups`` passing the expectations, judged against ``mostly`` (that of the
    ``warn:`` thresholds when there is no ``expect``)."""
    per = check.per
    if not groups:
        raise _FieldProblem(f"the result has no {per} groups (did include/exclude leave any tensor?)")
    mostly = 1.0 if check.mostly is None else check.mostly
    need = "need all" if check.mostly is None else f"need {check.mostly * 100:g}%"

    def judge(expectations: Sequence[Expectation], label: str = "") -> tuple[int, bool, str]:
        failing: list[tuple[str, _Verdict]] = []
        for key, fields in groups.items():
            where = f"{per} group {key!r}"
            group_operands = _group_operands(check, operands, key)
            verdicts = [_judge(e, fields, result.value_field, where, group_operands) for e in expectations]
            failed = [v for v in verdicts if not v.holds]
            if failed:
                failing.append((key, max(failed, key=lambda v: v.shortfall)))
        passed = len(groups) - len(failing)
        summary = f"{passed}/{len(groups)} {per} groups pass{label} ({need})"
        if failing:
            failing.sort(key=lambda item: -item[1].shortfall)
            worst = ", ".join(f"{key!r}: {v.reason}" for key, v in failing[:_WORST_SHOWN])
            summary += f"; worst {worst} ({_short(failing[0][1].location)})"
        return passed, passed >= mostly * len(groups) - 1e-9, summary

    if not check.expect and not check.warn:  # a measurement: its value is the whole result's
        return CheckOutcome(check, Status.PASS, result, value=result.value)
    status = Status.PASS
    if check.expect:
        passed, ok, message = judge(check.expect)
        status = Status.PASS if ok else Status.FAIL
    if check.warn and status is Status.PASS:
        warn_passed, ok, warned = judge(check.warn, " the warn thresholds")
        if not check.expect:  # the value shown is the share passing what the check has
            passed, message = warn_passed, warned
        if not ok:
            status, message = Status.WARN, warned
    share = passed / len(groups)
    return CheckOutcome(
        check, status, result, value=share, message=message, groups_passed=(passed, len(groups))
    )


def _short(location: Location) -> str:
    return f"{location.file}:{location.line}" if location.line is not None else location.file


def _judge(
    expectation: Expectation,
    fields: Mapping[str, Scalar],
    value_field: str,
    where: str,
    operands: _Operands,
) -> _Verdict:
    name = expectation.field or value_field
    label = expectation.field or "value"
    value = _number(fields, name, where)
    bounds = [_operand(operand, fields, where, operands) for operand in expectation.operands]
    shown = [
        _show_operand(operand, bound) for operand, bound in zip(expectation.operands, bounds, strict=True)
    ]
    location = expectation.location
    if math.isnan(value):
        return _Verdict(False, math.inf, f"{label} is NaN", location)
    if any(math.isnan(bound) for bound in bounds):
        return _Verdict(
            False, math.inf, f"{label} {value:.6g} compared with NaN ({', '.join(shown)})", location
        )
    op = expectation.op
    if op == "between":
        low, high = bounds
        shortfall = max(low - value, value - high)
        reason = f"{label} {value:.6g} is not between {shown[0]} and {shown[1]}"
    elif op == "eq":
        distance = abs(value - bounds[0])
        # A value exactly at the tolerance passes, even when float rounding puts it a hair beyond.
        at_edge = math.isclose(distance, expectation.tol, rel_tol=1e-9)
        shortfall = 0.0 if at_edge else distance - expectation.tol
        tolerance = f" ± {expectation.tol:g}" if expectation.tol else ""
        reason = f"{label} {value:.6g} is not == {shown[0]}{tolerance}"
    else:
        bound = bounds[0]
        shortfall = bound - value if op in ("gt", "ge") else value - bound
        reason = f"{label} {value:.6g} is not {_SYMBOLS[op]} {shown[0]}"
    strict = op in ("gt", "lt")
    holds = shortfall < 0 if strict else shortfall <= 0
    return _Verdict(holds, shortfall, reason, location)


def _number(fields: Mapping[str, Scalar], name: str, where: str) -> float:
    if name not in fields:
        raise _FieldProblem(f"no field {name!r} in {where} (its fields: {', '.join(fields) or 'none'})")
    value = fields[name]
    if not isinstance(value, int | float) or isinstance(value, bool):
        shown = "null" if value is None else repr(value)
        raise _FieldProblem(f"field {name!r} of {where} is {shown}, not a number")
    return float(value)


def _operand(operand: Operand, fields: Mapping[str, Scalar], where: str, operands: _Operands) -> float:
    if isinstance(operand, FieldRef):
        return _number(fields, operand.field, where)
    if isinstance(operand, BaselineRef):
        baseline = operands.baseline or {}
        return operand.apply(
            _number(baseline, operand.field or operands.baseline_value_field, operands.baseline_where)
        )
    return operands.referenced[operand] if isinstance(operand, CheckRef) else operand


def _show_operand(operand: Operand, bound: float) -> str:
    if isinstance(operand, FieldRef):
        return f"{operand.field} ({bound:.6g})"
    if isinstance(operand, CheckRef | BaselineRef):
        return f"{operand.describe()} ({bound:.6g})"
    return f"{bound:g}"
