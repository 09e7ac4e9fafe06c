"""One :class:`Check` from its mapping, once its template is merged and variables substituted.

The schema has checked the shape as written; what a variable brought in is checked here, along
with everything that depends on the metric (arguments, ``per``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sparsecheck.errors import Location, SpecError
from sparsecheck.metrics._api import Metric
from sparsecheck.spec._args import validate_args
from sparsecheck.spec._located import YamlList, YamlMap, to_plain
from sparsecheck.spec._messages import did_you_mean, show_value
from sparsecheck.spec._model import (
    OPERATORS,
    BaselineRef,
    Check,
    CheckpointRef,
    CheckRef,
    Expectation,
    FieldRef,
    Operand,
)


def build_check(
    body: YamlMap,
    check_id: str,
    params: Mapping[str, Any],
    spec_path: Path,
    checkpoints: Mapping[str, CheckpointRef],
    metrics: Mapping[str, Metric],
) -> Check:
    """The check ``body`` describes (``id``, ``use`` and the parametrize keys already handled)."""
    metric = _metric(body, metrics)
    per = _per(body, metric)
    return Check(
        id=check_id,
        metric=metric.name,
        args=validate_args(metric, body.get("args"), body.location, checkpoints, spec_path.parent),
        location=body.location,
        spec_path=spec_path,
        checkpoints=checkpoints,
        expect=_expectations(body, "expect"),
        warn=_expectations(body, "warn"),
        per=per,
        mostly=_mostly(body, per),
        marks=_marks(body),
        skip=_skip(body),
        description=_string(body, "description") or "",
        params=dict(params),
    )


def _string(body: YamlMap, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{key}: expected a string, got {show_value(value)}", body.value_location(key))
    return value


def _number(value: Any, where: str, location: Location) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        raise SpecError(f"{where}: expected a number, got {show_value(value)}", location)
    return float(value)


def _metric(body: YamlMap, metrics: Mapping[str, Metric]) -> Metric:
    name = _string(body, "metric")
    if name is None:
        raise SpecError("missing required key 'metric' (or 'use' a template that has one)", body.location)
    if name not in metrics:
        hint = did_you_mean(name, metrics) or f" (known: {', '.join(sorted(metrics)) or 'none'})"
        raise SpecError(f"unknown metric {name!r}{hint}", body.value_location("metric"))
    return metrics[name]


def _per(body: YamlMap, metric: Metric) -> str | None:
    per = _string(body, "per")
    if per is None or per in metric.granularities:
        return per
    if not metric.granularities:
        hint = "it has no per-group results"
    else:
        hint = f"it has: {', '.join(metric.granularities)}"
    raise SpecError(
        f"per: {per!r} is not a granularity of metric {metric.name!r}"
        f"{did_you_mean(per, metric.granularities)} ({hint})",
        body.value_location("per"),
    )


def _mostly(body: YamlMap, per: str | None) -> float | None:
    if "mostly" not in body:
        return None
    location = body.value_location("mostly")
    mostly = _number(body["mostly"], "mostly", location)
    if not 0.0 < mostly <= 1.0:
        raise SpecError(f"mostly: expected a number in (0, 1], got {mostly:g}", location)
    if per is None:
        raise SpecError("mostly needs per: (the share of groups that must pass)", location)
    return mostly


def _marks(body: YamlMap) -> tuple[str, ...]:
    marks = body.get("marks", [])
    for index, mark in enumerate(marks):
        if not isinstance(mark, str):
            raise SpecError(
                f"marks[{index}]: expected a string, got {show_value(mark)}", marks.item_location(index)
            )
    return tuple(marks)


def _skip(body: YamlMap) -> str | None:
    skip = body.get("skip")
    if skip is True or skip == "":
        return "skipped"
    if skip is None or skip is False:
        return None
    if not isinstance(skip, str):
        raise SpecError(
            f"skip: expected a reason or true/false, got {show_value(skip)}", body.value_location("skip")
        )
    return skip


def _expectations(body: YamlMap, key: str) -> tuple[Expectation, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if isinstance(value, YamlList):
        return tuple(_expectation(item, f"{key}[{index}]") for index, item in enumerate(value))
    return (_expectation(value, key),)


def _expectation(item: YamlMap, where: str) -> Expectation:
    (op,) = [key for key in item if key in OPERATORS]
    raw, location = item[op], item.value_location(op)
    operands: tuple[Operand, ...]
    if op == "between":
        operands = tuple(
            _operand(bound, f"{where}.between[{index}]", raw.item_location(index))
            for index, bound in enumerate(raw)
        )
        low, high = operands
        if isinstance(low, float) and isinstance(high, float) and low > high:
            raise SpecError(f"{where}.between: low bound {low:g} is above high bound {high:g}", location)
    else:
        operands = (_operand(raw, f"{where}.{op}", location),)
    field = _string(item, "field")
    tol = _number(item.get("tol", 0.0), f"{where}.tol", item.value_location("tol"))
    if tol < 0:
        raise SpecError(f"{where}.tol: expected a tolerance >= 0, got {tol:g}", item.value_location("tol"))
    return Expectation(op=op, operands=operands, location=item.location, field=field, tol=tol)


#: The keys of a ``{check: ID}`` and of a ``{baseline: true | FIELD}`` operand.
_CHECK_REF_KEYS = frozenset({"check", "field", "times", "plus", "minus"})
_BASELINE_REF_KEYS = frozenset({"baseline", "times", "plus", "minus"})


def _operand(value: Any, where: str, location: Location) -> Operand:
    if isinstance(value, dict) and "check" in value:
        return _check_ref(value, where, location)
    if isinstance(value, dict) and "baseline" in value:
        return _baseline_ref(value, where, location)
    value = to_plain(value)
    if isinstance(value, dict):
        name = value.get("field")
        if set(value) != {"field"} or not isinstance(name, str) or not name:
            raise SpecError(
                f"{where}: expected a number, {{field: NAME}}, {{check: ID}} or {{baseline: true}}", location
            )
        return FieldRef(name)
    return _number(value, where, location)


def _located(value: dict[str, Any], location: Location) -> Callable[[str], Location]:
    """``at(key)``: where ``value[key]`` is written (``location`` when not known)."""

    def at(key: str) -> Location:
        return value.value_location(key) if isinstance(value, YamlMap) else location

    return at


def _scaling(value: dict[str, Any], where: str, location: Location) -> tuple[float, float]:
    """``times`` and ``plus`` - ``minus`` of a reference operand."""
    at = _located(value, location)
    numbers = {
        key: _number(value[key], f"{where}.{key}", at(key))
        for key in ("times", "plus", "minus")
        if key in value
    }
    return numbers.get("times", 1.0), numbers.get("plus", 0.0) - numbers.get("minus", 0.0)


def _check_ref(value: dict[str, Any], where: str, location: Location) -> CheckRef:
    """``{check: ID, field, times, plus | minus}``; that ``ID`` names a check of the file is
    checked once every check is loaded (:mod:`sparsecheck.spec._references`)."""
    at = _located(value, location)
    if not _CHECK_REF_KEYS.issuperset(value) or {"plus", "minus"} <= set(value):
        raise SpecError(f"{where}: expected {{check: ID, field, times, plus or minus}}", location)
    name = value["check"]
    if not isinstance(name, str) or not name:
        raise SpecError(f"{where}.check: expected a check id, got {show_value(name)}", at("check"))
    field = value.get("field")
    if field is not None and (not isinstance(field, str) or not field):
        raise SpecError(f"{where}.field: expected a field name, got {show_value(field)}", at("field"))
    times, offset = _scaling(value, where, location)
    return CheckRef(check=name, field=field, times=times, offset=offset, location=at("check"))


def _baseline_ref(value: dict[str, Any], where: str, location: Location) -> BaselineRef:
    """``{baseline: true | FIELD, times, plus | minus}``: this check's result in the baseline."""
    at = _located(value, location)
    if not _BASELINE_REF_KEYS.issuperset(value) or {"plus", "minus"} <= set(value):
        raise SpecError(f"{where}: expected {{baseline: true or FIELD, times, plus or minus}}", location)
    name = value["baseline"]
    if name is not True and (not isinstance(name, str) or not name):
        raise SpecError(
            f"{where}.baseline: expected true (the primary value) or a field name, got {show_value(name)}",
            at("baseline"),
        )
    times, offset = _scaling(value, where, location)
    field = None if name is True else name
    return BaselineRef(field=field, times=times, offset=offset, location=at("baseline"))
