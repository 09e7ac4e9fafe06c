"""Judging results: every operator, fields against fields, warn, per + mostly, and the ERROR cases."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from spec_support import HEADER, load, plugin_config, result, where

from sparsecheck.engine._baseline import Baseline
from sparsecheck.engine._outcome import Status
from sparsecheck.spec._expect import evaluate
from sparsecheck.spec._model import Check

CHECK = HEADER + "checks:\n  - id: c\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a}\n"


def make_check(tmp_path: Path, tail: str) -> Check:
    (check,) = load(tmp_path, CHECK + tail).checks
    return check


def line_of(tmp_path: Path, tail: str, needle: str) -> str:
    """``file:line`` of ``needle`` in the spec ``make_check`` writes."""
    return where(tmp_path / "spec.sparsecheck.yaml", CHECK + tail, needle).rsplit(":", 1)[0]


@pytest.mark.parametrize(
    ("expect", "value", "status"),
    [
        ("{gt: 0.7}", 0.71, Status.PASS),
        ("{gt: 0.7}", 0.7, Status.FAIL),
        ("{ge: 0.7}", 0.7, Status.PASS),
        ("{ge: 0.7}", 0.69, Status.FAIL),
        ("{lt: 0.7}", 0.69, Status.PASS),
        ("{lt: 0.7}", 0.7, Status.FAIL),
        ("{le: 0.7}", 0.7, Status.PASS),
        ("{le: 0.7}", 0.71, Status.FAIL),
        ("{eq: 0.5}", 0.5, Status.PASS),
        ("{eq: 0.5}", 0.5000001, Status.FAIL),
        ("{eq: 0.5, tol: 0.01}", 0.51, Status.PASS),
        ("{eq: 0.5, tol: 0.01}", 0.49, Status.PASS),
        ("{eq: 0.5, tol: 0.01}", 0.52, Status.FAIL),
        ("{between: [0.7, 0.99]}", 0.7, Status.PASS),
        ("{between: [0.7, 0.99]}", 0.99, Status.PASS),
        ("{between: [0.7, 0.99]}", 0.995, Status.FAIL),
        ("{between: [0.7, 0.99]}", 0.5, Status.FAIL),
        ("[{gt: 0.1}, {lt: 0.9}]", 0.5, Status.PASS),
        ("[{gt: 0.1}, {lt: 0.4}]", 0.5, Status.FAIL),
        ("{gt: 0}", 1, Status.PASS),
    ],
)
def test_operators(tmp_path: Path, expect: str, value: float, status: Status) -> None:
    check = make_check(tmp_path, f"    expect: {expect}\n")
    outcome = evaluate(check, result({"sparsity": value}))
    assert outcome.status is status
    assert outcome.value == value
    assert outcome.expectation == " and ".join(e.describe() for e in check.expect)


def test_a_failure_says_value_operator_and_the_spec_line(tmp_path: Path) -> None:
    tail = "    expect: [{gt: 0.1}, {gt: 0.7}, {between: [0.8, 0.9]}]\n"
    outcome = evaluate(make_check(tmp_path, tail), result({"sparsity": 0.62}))
    assert outcome.status is Status.FAIL
    spot = line_of(tmp_path, tail, "{gt: 0.7}")
    assert outcome.message == (
        f"value 0.62 is not > 0.7 ({spot}); value 0.62 is not between 0.8 and 0.9 ({spot})"
    )
    assert outcome.expectation == "value > 0.1 and value > 0.7 and 0.8 <= value <= 0.9"


def test_named_fields_and_one_field_against_another(tmp_path: Path) -> None:
    tail = "    expect:\n      - {field: o1, gt: {field: baseline_o1}}\n      - {field: lift_o1, gt: 1.5}\n"
    check = make_check(tmp_path, tail)
    passing = evaluate(check, result({"sparsity": 0.1, "o1": 0.8, "baseline_o1": 0.5, "lift_o1": 1.6}))
    assert passing.status is Status.PASS
    assert passing.expectation == "o1 > baseline_o1 and lift_o1 > 1.5"
    failing = evaluate(check, result({"sparsity": 0.1, "o1": 0.4, "baseline_o1": 0.5, "lift_o1": 1.6}))
    assert failing.status is Status.FAIL
    assert failing.message.startswith("o1 0.4 is not > baseline_o1 (0.5) (")
    # the outcome shows the field its first expectation compares, not the primary value
    assert (passing.value, failing.value) == (0.8, 0.4)


def test_warn_only_when_expect_holds(tmp_path: Path) -> None:
    tail = "    expect: {gt: 0.7}\n    warn: {gt: 0.8}\n"
    check = make_check(tmp_path, tail)
    assert evaluate(check, result({"sparsity": 0.9})).status is Status.PASS
    warned = evaluate(check, result({"sparsity": 0.75}))
    assert warned.status is Status.WARN
    assert warned.message == f"value 0.75 is not > 0.8 ({line_of(tmp_path, tail, '{gt: 0.8}')})"
    assert evaluate(check, result({"sparsity": 0.6})).status is Status.FAIL


def test_a_check_without_expect_is_a_passing_measurement(tmp_path: Path) -> None:
    outcome = evaluate(make_check(tmp_path, ""), result({"sparsity": 0.3}))
    assert (outcome.status, outcome.value, outcome.expectation) == (Status.PASS, 0.3, "")


def test_nan_fails(tmp_path: Path) -> None:
    outcome = evaluate(make_check(tmp_path, "    expect: {lt: 0.5}\n"), result({"sparsity": math.nan}))
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("value is NaN (")
    field_nan = evaluate(
        make_check(tmp_path, "    expect: {lt: {field: other}}\n"),
        result({"sparsity": 0.1, "other": math.nan}),
    )
    assert field_nan.status is Status.FAIL
    assert "compared with NaN" in field_nan.message


@pytest.mark.parametrize(
    ("expect", "fields", "message"),
    [
        (
            "{field: o2, gt: 1}",
            {"sparsity": 0.1, "o1": 1},
            "no field 'o2' in the update_sparsity result (its fields: sparsity, o1)",
        ),
        (
            "{gt: {field: base}}",
            {"sparsity": 0.1},
            "no field 'base' in the update_sparsity result (its fields: sparsity)",
        ),
        (
            "{gt: 1}",
            {"density": 0.1},
            "no field 'sparsity' in the update_sparsity result (its fields: density)",
        ),
        (
            "{field: dtypes, gt: 1}",
            {"sparsity": 0.1, "dtypes": "bf16"},
            "field 'dtypes' of the update_sparsity result is 'bf16', not a number",
        ),
        (
            "{field: x, gt: 1}",
            {"sparsity": 0.1, "x": None},
            "field 'x' of the update_sparsity result is null, not a number",
        ),
    ],
)
def test_a_missing_or_non_numeric_field_is_a_usage_error(
    tmp_path: Path, expect: str, fields: dict[str, object], message: str
) -> None:
    outcome = evaluate(make_check(tmp_path, f"    expect: {expect}\n"), result(fields))
    assert (outcome.status, outcome.error_kind, outcome.message) == (Status.ERROR, "usage", message)


LAYERS = [0.95, 0.41, 0.9, 0.55, 0.7, 0.52, 0.8, 0.61, 0.99, 0.65]


def layer_result(values: list[float]) -> dict[str, dict[str, dict[str, float]]]:
    return {"layer": {str(i): {"sparsity": v, "density": 1 - v} for i, v in enumerate(values)}}


@pytest.mark.parametrize("mostly", [None, 0.6, 0.7, 0.75, 1.0])
def test_per_group_share_against_mostly(tmp_path: Path, mostly: float | None) -> None:
    tail = "    per: layer\n    expect: {ge: 0.6}\n" + (f"    mostly: {mostly}\n" if mostly else "")
    outcome = evaluate(make_check(tmp_path, tail), result({"sparsity": 0.7}, layer_result(LAYERS)))
    passing = sum(v >= 0.6 for v in LAYERS)
    assert outcome.value == passing / len(LAYERS)
    need = 1.0 if mostly is None else mostly
    assert outcome.status is (Status.PASS if passing >= need * len(LAYERS) else Status.FAIL)
    assert outcome.message.startswith(f"{passing}/{len(LAYERS)} layer groups pass")
    assert outcome.expectation == "value >= 0.6 per layer" + (f", mostly {mostly:g}" if mostly else "")


def test_the_message_names_the_worst_three_groups(tmp_path: Path) -> None:
    tail = "    per: layer\n    expect: {ge: 0.6}\n    mostly: 0.9\n"
    outcome = evaluate(make_check(tmp_path, tail), result({"sparsity": 0.7}, layer_result(LAYERS)))
    assert outcome.status is Status.FAIL
    worst = sorted((v, str(i)) for i, v in enumerate(LAYERS) if v < 0.6)[:3]
    expected = ", ".join(f"'{key}': value {v:.6g} is not >= 0.6" for v, key in worst)
    spot = line_of(tmp_path, tail, "{ge: 0.6}")
    assert outcome.message == f"7/10 layer groups pass (need 90%); worst {expected} ({spot})"


def test_per_group_warn(tmp_path: Path) -> None:
    tail = "    per: layer\n    expect: {ge: 0.4}\n    warn: {ge: 0.6}\n    mostly: 0.8\n"
    outcome = evaluate(make_check(tmp_path, tail), result({"sparsity": 0.7}, layer_result(LAYERS)))
    assert outcome.status is Status.WARN
    assert outcome.value == 1.0
    assert outcome.message.startswith("7/10 layer groups pass the warn thresholds (need 80%)")


def test_per_group_outcome_counts_the_groups_passing(tmp_path: Path) -> None:
    # LAYERS has 7 of 10 values >= 0.6 and 9 of 10 >= 0.45
    tail = "    per: layer\n    expect: {field: sparsity, ge: 0.45}\n    warn: {ge: 0.6}\n    mostly: 0.8\n"
    outcome = evaluate(make_check(tmp_path, tail), result({"sparsity": 0.7}, layer_result(LAYERS)))
    assert (outcome.status, outcome.groups_passed, outcome.value) == (Status.WARN, (9, 10), 0.9)
    assert outcome.value_name is None and outcome.warn_expectation == "value >= 0.6"
    warn_only = "    per: layer\n    warn: {ge: 0.6}\n    mostly: 0.8\n"
    outcome = evaluate(make_check(tmp_path, warn_only), result({"sparsity": 0.7}, layer_result(LAYERS)))
    assert (outcome.status, outcome.groups_passed, outcome.value) == (Status.WARN, (7, 10), 0.7)
    assert (outcome.expectation, outcome.warn_expectation) == ("", "value >= 0.6 per layer, mostly 0.8")


def test_a_field_other_than_the_primary_value_is_named(tmp_path: Path) -> None:
    named = evaluate(
        make_check(tmp_path, "    expect: {field: density, lt: 0.5}\n"),
        result({"sparsity": 0.7, "density": 0.3}),
    )
    assert (named.value, named.value_name) == (pytest.approx(0.3), "density")
    primary = evaluate(
        make_check(tmp_path, "    expect: {field: sparsity, gt: 0.5}\n"),
        result({"sparsity": 0.7, "density": 0.3}),
    )
    assert (primary.value, primary.value_name) == (0.7, None)


def test_per_group_fields_against_fields(tmp_path: Path) -> None:
    tail = "    per: layer\n    expect: {gt: {field: density}}\n"
    outcome = evaluate(make_check(tmp_path, tail), result({"sparsity": 0.7}, layer_result([0.9, 0.4, 0.6])))
    assert outcome.status is Status.FAIL
    assert outcome.value == pytest.approx(2 / 3)
    assert "'1': value 0.4 is not > density (0.6)" in outcome.message


def test_per_group_errors(tmp_path: Path) -> None:
    check = make_check(tmp_path, "    per: module\n    expect: {ge: 0.6}\n")
    missing = evaluate(check, result({"sparsity": 0.7}, layer_result(LAYERS)))
    assert (missing.status, missing.error_kind) == (Status.ERROR, "internal")
    assert missing.message == "metric 'update_sparsity' returned no per-module results (it returned: layer)"
    empty = evaluate(check, result({"sparsity": 0.7}, {"module": {}}))
    assert (empty.status, empty.error_kind) == (Status.ERROR, "usage")
    assert "no module groups" in empty.message
    no_field = evaluate(check, result({"sparsity": 0.7}, {"module": {"q_proj": {"density": 0.1}}}))
    assert (no_field.status, no_field.error_kind) == (Status.ERROR, "usage")
    assert no_field.message == "no field 'sparsity' in module group 'q_proj' (its fields: density)"


def test_skipped_checks_are_skip(tmp_path: Path) -> None:
    outcome = evaluate(
        make_check(tmp_path, "    skip: not today\n    expect: {gt: 2}\n"), result({"sparsity": 0.1})
    )
    assert (outcome.status, outcome.message) == (Status.SKIP, "not today")


def test_the_hook_is_the_plain_function(tmp_path: Path) -> None:
    check = make_check(tmp_path, "    expect: {gt: 0.7}\n")
    config = plugin_config()
    outcome = config.hook.sparsecheck_evaluate(
        check=check, result=result({"sparsity": 0.5}), results={}, baseline=Baseline()
    )
    assert outcome == evaluate(check, result({"sparsity": 0.5}))
    assert outcome.status is Status.FAIL
