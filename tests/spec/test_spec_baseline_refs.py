"""``{baseline: true | FIELD}`` operands: loading, schema errors at file:line:column, and
judging against a baseline entry (whole result and per group)."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_support import HEADER, load, load_error, result, where

from sparsecheck.engine._baseline import Baseline, BaselineEntry
from sparsecheck.engine._outcome import Status
from sparsecheck.spec._expect import evaluate
from sparsecheck.spec._model import BaselineRef, Check

SPEC = "spec.sparsecheck.yaml"

TEXT = (
    HEADER
    + """\
checks:
  - id: kept
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    expect: {ge: {baseline: true, minus: 0.02}}
    warn: {field: o1, le: {baseline: o1, times: 1.5}}
"""
)


def _check(tmp_path: Path, text: str = TEXT) -> Check:
    (check,) = load(tmp_path, text).checks
    return check


def test_baseline_operands_load_with_field_factor_and_offset(tmp_path: Path) -> None:
    check = _check(tmp_path)
    assert check.expect[0].operands == (BaselineRef(offset=-0.02),)
    assert check.warn[0].operands == (BaselineRef(field="o1", times=1.5),)
    assert str(check.expect[0].operands[0].location) == where(tmp_path / SPEC, TEXT, "true, minus")
    assert check.baseline_refs == (BaselineRef(offset=-0.02), BaselineRef(field="o1", times=1.5))
    assert check.references == ()  # a baseline is not another check


@pytest.mark.parametrize(
    ("operand", "message", "needle"),
    [
        (
            "{baseline: true, plus: 1, minus: 2}",
            "a baseline reference takes plus or minus, not both",
            "{baseline",
        ),
        ("{baseline: true, feild: x}", "unknown key 'feild'", "feild"),
        ("{baseline: false}", "expected true (the primary value) or a field name, got false", "false"),
        ("{baseline: 3}", "expected true (the primary value) or a field name, got 3", "3}"),
    ],
)
def test_malformed_baseline_operands_are_schema_errors(
    tmp_path: Path, operand: str, message: str, needle: str
) -> None:
    text = TEXT.replace("{baseline: true, minus: 0.02}}", operand + "}")
    error = load_error(tmp_path, text)
    assert error.startswith(where(tmp_path / SPEC, text, needle) + ": ")
    assert message in error


def _baseline(check: Check, fields: dict[str, float], groups: dict | None = None) -> Baseline:  # type: ignore[type-arg]
    entry = BaselineEntry(
        value=fields["sparsity"], value_field="sparsity", fields=fields, groups=groups or {}
    )
    return Baseline(Path("b.json"), {check.nodeid: entry})


@pytest.mark.parametrize(("now", "status"), [(0.81, Status.PASS), (0.78, Status.PASS), (0.779, Status.FAIL)])
def test_judging_against_the_baseline_value(tmp_path: Path, now: float, status: Status) -> None:
    check = _check(tmp_path)
    baseline = _baseline(check, {"sparsity": 0.8, "o1": 0.5})
    outcome = evaluate(check, result({"sparsity": now, "o1": 0.5}), {}, baseline)
    assert outcome.status is status
    assert outcome.baseline == 0.8
    assert outcome.delta == pytest.approx(now - 0.8)
    assert outcome.expectation == "value >= baseline.value - 0.02"
    if status is Status.FAIL:
        assert outcome.message.startswith(f"value {now:g} is not >= baseline.value - 0.02 (0.78)")


def test_a_baseline_field_warns(tmp_path: Path) -> None:
    check = _check(tmp_path)
    baseline = _baseline(check, {"sparsity": 0.8, "o1": 0.5})
    outcome = evaluate(check, result({"sparsity": 0.8, "o1": 0.76}), {}, baseline)
    assert outcome.status is Status.WARN
    assert "o1 0.76 is not <= 1.5 * baseline.o1 (0.75)" in outcome.message


def test_per_groups_compare_with_their_own_baseline_group(tmp_path: Path) -> None:
    text = TEXT.replace("    warn: {field: o1, le: {baseline: o1, times: 1.5}}\n", "    per: layer\n")
    check = _check(tmp_path, text)
    saved = {"0": {"sparsity": 0.9}, "1": {"sparsity": 0.5}}
    baseline = _baseline(check, {"sparsity": 0.7}, {"layer": saved})
    now = result({"sparsity": 0.7}, {"layer": {"0": {"sparsity": 0.89}, "1": {"sparsity": 0.49}}})
    assert evaluate(check, now, {}, baseline).status is Status.PASS
    swapped = result({"sparsity": 0.7}, {"layer": {"0": {"sparsity": 0.5}, "1": {"sparsity": 0.9}}})
    outcome = evaluate(check, swapped, {}, baseline)
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("1/2 layer groups pass")
    extra = result({"sparsity": 0.7}, {"layer": {"0": {"sparsity": 0.9}, "2": {"sparsity": 0.9}}})
    missing = evaluate(check, extra, {}, baseline)
    assert missing.status is Status.ERROR
    assert "layer group '2' is not in the baseline of check 'kept'" in missing.message


def test_no_baseline_is_an_error_or_a_skip(tmp_path: Path) -> None:
    check = _check(tmp_path)
    outcome = evaluate(check, result({"sparsity": 0.8, "o1": 0.5}), {}, Baseline())
    assert (outcome.status, outcome.error_kind) == (Status.ERROR, "usage")
    assert outcome.message.startswith(
        "the check compares with {baseline: …} but no --baseline FILE was given"
    )
    skipped = evaluate(check, result({"sparsity": 0.8, "o1": 0.5}), {}, Baseline(on_missing="skip"))
    assert skipped.status is Status.SKIP
