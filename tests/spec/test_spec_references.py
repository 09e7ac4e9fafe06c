"""``{check: ID}`` operands: loading, validation at file:line:column, judging against another
check's result, and the checks a selection needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_support import HEADER, load, load_error, result, where

from sparsecheck.engine._outcome import Status
from sparsecheck.errors import SpecError
from sparsecheck.metrics._api import MetricResult
from sparsecheck.spec._expect import evaluate
from sparsecheck.spec._model import Check, CheckRef, FieldRef
from sparsecheck.spec._references import referenced_checks

SPEC = "spec.sparsecheck.yaml"

REFERENCES = (
    HEADER
    + """\
checks:
  - id: sft-sparsity
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
  - id: rl-sparser
    metric: update_sparsity
    args: {base: sft, tuned: rl_b}
    expect: {gt: {check: sft-sparsity}}
  - id: recovers
    metric: update_sparsity
    args: {base: sft, tuned: rl_b}
    expect: {field: o1, ge: {check: sft-sparsity, field: o1, minus: 0.05}}
    warn: {between: [{check: sft-sparsity, times: 0.5}, {check: rl-sparser, plus: 0.25}]}
"""
)


def checks_by_id(tmp_path: Path, text: str) -> dict[str, Check]:
    return {check.id: check for check in load(tmp_path, text).checks}


def test_references_load_with_field_factor_and_offset(tmp_path: Path) -> None:
    checks = checks_by_id(tmp_path, REFERENCES)
    (sparser,) = checks["rl-sparser"].expect
    assert sparser.operands == (CheckRef("sft-sparsity"),)
    assert str(sparser.operands[0].location) == where(tmp_path / SPEC, REFERENCES, "sft-sparsity}")
    (recovers,) = checks["recovers"].expect
    assert recovers.operands == (CheckRef("sft-sparsity", field="o1", offset=-0.05),)
    (band,) = checks["recovers"].warn
    assert band.operands == (CheckRef("sft-sparsity", times=0.5), CheckRef("rl-sparser", offset=0.25))
    assert checks["recovers"].references == (
        f"{tmp_path / SPEC}::sft-sparsity",
        f"{tmp_path / SPEC}::rl-sparser",
    )
    assert checks["sft-sparsity"].references == ()


def test_descriptions_show_the_reference(tmp_path: Path) -> None:
    checks = checks_by_id(tmp_path, REFERENCES)
    assert checks["rl-sparser"].expect[0].describe() == "value > sft-sparsity.value"
    assert checks["recovers"].expect[0].describe() == "o1 >= sft-sparsity.o1 - 0.05"
    assert (
        checks["recovers"].warn[0].describe()
        == "0.5 * sft-sparsity.value <= value <= rl-sparser.value + 0.25"
    )


PARAMETRIZED = (
    HEADER
    + """\
checks:
  - id: each
    metric: update_sparsity
    parametrize: {run: [rl_a, rl_b]}
    args: {base: sft, tuned: "${run}"}
  - id: pairwise
    metric: update_sparsity
    parametrize: {run: [rl_a, rl_b]}
    args: {base: sft, tuned: "${run}"}
    expect: {ge: {check: "each[${run}]"}}
  - id: target
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    expect:
      lt:
        check: TARGET
"""
)


def test_parametrized_checks_are_referenced_with_their_values(tmp_path: Path) -> None:
    checks = checks_by_id(tmp_path, PARAMETRIZED.replace("TARGET", "each[rl_b]"))
    assert [e.operands for e in checks["pairwise[rl_a]"].expect] == [(CheckRef("each[rl_a]"),)]
    assert [e.operands for e in checks["pairwise[rl_b]"].expect] == [(CheckRef("each[rl_b]"),)]
    assert checks["target"].references == (f"{tmp_path / SPEC}::each[rl_b]",)


def test_a_parametrized_checks_base_id_lists_its_checks(tmp_path: Path) -> None:
    text = PARAMETRIZED.replace("TARGET", "each")
    at = where(tmp_path / SPEC, text, "each\n", 1)
    assert load_error(tmp_path, text) == (
        f"{at}: check 'each' is parametrized: reference one of its checks ('each[rl_a]', 'each[rl_b]')"
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("sft-sparsty", "unknown check 'sft-sparsty' (did you mean 'sft-sparsity'?)"),
        ("zzz", "unknown check 'zzz' (the file's checks: sft-sparsity, rl-sparser, recovers)"),
        ("rl-sparser", "a check cannot reference itself"),
    ],
)
def test_unknown_and_self_references_are_errors(tmp_path: Path, target: str, message: str) -> None:
    text = REFERENCES.replace("gt: {check: sft-sparsity}", f"gt: {{check: {target}}}")
    assert load_error(tmp_path, text) == f"{where(tmp_path / SPEC, text, target + '}')}: {message}"


def test_a_parametrized_reference_to_a_missing_check_names_the_expansion(tmp_path: Path) -> None:
    text = PARAMETRIZED.replace("TARGET", "each[rl_a]").replace(
        '[rl_a, rl_b]}\n    args: {base: sft, tuned: "${run}"}\n  - id: pairwise',
        '[rl_a]}\n    args: {base: sft, tuned: "${run}"}\n  - id: pairwise',
    )
    at = where(tmp_path / SPEC, text, '"each[')
    assert load_error(tmp_path, text) == (
        f"{at}: pairwise[rl_b]: unknown check 'each[rl_b]' (did you mean 'each[rl_a]'?)"
    )


def test_cycles_are_errors_at_the_reference_closing_them(tmp_path: Path) -> None:
    text = REFERENCES.replace(
        "args: {base: sft, tuned: rl_a}\n",
        "args: {base: sft, tuned: rl_a}\n    expect: {lt: {check: recovers}}\n",
        1,
    )
    assert load_error(tmp_path, text) == (
        f"{where(tmp_path / SPEC, text, 'sft-sparsity, field')}: "
        "reference cycle: sft-sparsity -> recovers -> sft-sparsity"
    )


@pytest.mark.parametrize(
    ("operand", "message", "needle"),
    [
        (
            "{check: a, plus: 1, minus: 2}",
            "checks[1].expect.gt: a check reference takes plus or minus, not both",
            "{check: a,",
        ),
        ("{check: a, minsu: 1}", "unknown key 'minsu' (did you mean 'minus'?)", "minsu"),
        ("{check: 3}", "checks[1].expect.gt.check: expected a string, got 3", "3}"),
        (
            "{check: a, times: x}",
            "checks[1].expect.gt.times: expected a number or a ${variable}, got 'x'",
            "x}",
        ),
        ("{field: a, minus: 1}", "unknown key 'minus' (expected one of: field)", "minus"),
    ],
)
def test_malformed_references_are_schema_errors(
    tmp_path: Path, operand: str, message: str, needle: str
) -> None:
    text = REFERENCES.replace("{check: sft-sparsity}}", operand + "}")
    assert load_error(tmp_path, text) == f"{where(tmp_path / SPEC, text, needle)}: {message}"


def test_a_variable_operand_may_be_a_reference(tmp_path: Path) -> None:
    text = REFERENCES.replace(
        "checks:\n", "vars:\n  ref: {check: sft-sparsity, minus: 0.1}\nchecks:\n"
    ).replace("gt: {check: sft-sparsity}", 'gt: "${ref}"')
    checks = checks_by_id(tmp_path, text)
    assert checks["rl-sparser"].expect[0].operands == (CheckRef("sft-sparsity", offset=-0.1),)


def results_of(
    checks: dict[str, Check], **by_id: MetricResult | BaseException
) -> dict[str, MetricResult | BaseException]:
    return {checks[check_id].nodeid: value for check_id, value in by_id.items()}


@pytest.mark.parametrize(
    ("rl", "sft", "status"),
    [(0.9, 0.8, Status.PASS), (0.8, 0.8, Status.FAIL), (0.7, 0.8, Status.FAIL)],
)
def test_judging_against_another_checks_value(tmp_path: Path, rl: float, sft: float, status: Status) -> None:
    checks = checks_by_id(tmp_path, REFERENCES)
    outcome = evaluate(
        checks["rl-sparser"],
        result({"sparsity": rl}),
        results_of(checks, **{"sft-sparsity": result({"sparsity": sft})}),
    )
    assert (outcome.status, outcome.value, outcome.expectation) == (status, rl, "value > sft-sparsity.value")
    if status is Status.FAIL:
        line = where(tmp_path / SPEC, REFERENCES, "{gt: {check").rsplit(":", 1)[0]
        assert outcome.message == f"value {rl:g} is not > sft-sparsity.value ({sft:g}) ({line})"


def test_field_offset_and_factor_are_applied(tmp_path: Path) -> None:
    checks = checks_by_id(tmp_path, REFERENCES)
    check = checks["recovers"]
    others = results_of(
        checks,
        **{"sft-sparsity": result({"sparsity": 0.8, "o1": 0.6}), "rl-sparser": result({"sparsity": 0.5})},
    )
    # o1 >= 0.6 - 0.05; warn: 0.5 * 0.8 <= value <= 0.5 + 0.25
    assert evaluate(check, result({"sparsity": 0.75, "o1": 0.55}), others).status is Status.PASS
    failed = evaluate(check, result({"sparsity": 0.75, "o1": 0.54}), others)
    assert failed.status is Status.FAIL
    assert failed.message.startswith("o1 0.54 is not >= sft-sparsity.o1 - 0.05 (0.55) (")
    for sparsity in (0.39, 0.76):
        warned = evaluate(check, result({"sparsity": sparsity, "o1": 0.6}), others)
        assert warned.status is Status.WARN
        assert warned.message.startswith(
            f"value {sparsity:g} is not between 0.5 * sft-sparsity.value (0.4) and "
            "rl-sparser.value + 0.25 (0.75)"
        )


def test_per_groups_are_compared_with_the_referenced_value(tmp_path: Path) -> None:
    text = REFERENCES.replace(
        "expect: {gt: {check: sft-sparsity}}", "per: layer\n    expect: {gt: {check: sft-sparsity}}"
    )
    checks = checks_by_id(tmp_path, text)
    layers = {"layer": {str(i): {"sparsity": v} for i, v in enumerate([0.9, 0.5, 0.85])}}
    outcome = evaluate(
        checks["rl-sparser"],
        result({"sparsity": 0.75}, layers),
        results_of(checks, **{"sft-sparsity": result({"sparsity": 0.8}, layers)}),
    )
    assert outcome.status is Status.FAIL
    assert outcome.value == pytest.approx(2 / 3)
    assert outcome.message.startswith(
        "2/3 layer groups pass (need all); worst '1': value 0.5 is not > sft-sparsity.value (0.8)"
    )


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (None, "referenced check 'sft-sparsity' has no result (skipped or not run)"),
        (SpecError("bad", "x.yaml:3"), "referenced check 'sft-sparsity' errored: x.yaml:3: bad"),
        (ValueError("boom"), "referenced check 'sft-sparsity' errored: ValueError: boom"),
        (
            result({"density": 0.1}),
            "no field 'sparsity' in the result of check 'sft-sparsity' (its fields: density)",
        ),
        (
            result({"sparsity": None}),
            "field 'sparsity' of the result of check 'sft-sparsity' is null, not a number",
        ),
    ],
)
def test_a_missing_referenced_result_is_an_error_naming_it(
    tmp_path: Path, other: MetricResult | BaseException | None, message: str
) -> None:
    checks = checks_by_id(tmp_path, REFERENCES)
    results = {} if other is None else results_of(checks, **{"sft-sparsity": other})
    outcome = evaluate(checks["rl-sparser"], result({"sparsity": 0.9}), results)
    assert (outcome.status, outcome.error_kind, outcome.message) == (Status.ERROR, "usage", message)


def test_a_referenced_nan_fails(tmp_path: Path) -> None:
    checks = checks_by_id(tmp_path, REFERENCES)
    outcome = evaluate(
        checks["rl-sparser"],
        result({"sparsity": 0.9}),
        results_of(checks, **{"sft-sparsity": result({"sparsity": float("nan")})}),
    )
    assert outcome.status is Status.FAIL
    assert outcome.message.startswith("value 0.9 compared with NaN (sft-sparsity.value (nan))")


CHAIN = (
    HEADER
    + """\
checks:
  - {id: a, metric: update_sparsity, args: {base: sft, tuned: rl_a}}
  - {id: b, metric: update_sparsity, args: {base: sft, tuned: rl_a}, expect: {gt: {check: a}}}
  - {id: c, metric: update_sparsity, args: {base: sft, tuned: rl_a}, expect: {gt: {check: b}}}
  - {id: d, metric: update_sparsity, args: {base: sft, tuned: rl_a}, skip: later}
  - {id: e, metric: update_sparsity, args: {base: sft, tuned: rl_a}, expect: {gt: {check: d}}}
  - {id: f, metric: update_sparsity, args: {base: sft, tuned: rl_a}, expect: {gt: {check: a}}, skip: x}
"""
)


@pytest.mark.parametrize(
    ("selected", "needed"),
    [
        ("c", "ab"),  # through b
        ("bc", "a"),  # selected ones are not added again
        ("a", ""),
        ("e", ""),  # a skipped check is never computed
        ("f", ""),  # nor are the references of one
        ("ce", "ab"),
    ],
)
def test_referenced_checks_follow_references_transitively(tmp_path: Path, selected: str, needed: str) -> None:
    checks = load(tmp_path, CHAIN).checks
    chosen = [check for check in checks if check.id in selected]
    assert [check.id for check in referenced_checks(chosen, among=checks)] == list(needed)


def test_field_references_are_unchanged(tmp_path: Path) -> None:
    text = REFERENCES.replace("{check: sft-sparsity}}", "{field: baseline}}")
    assert checks_by_id(tmp_path, text)["rl-sparser"].expect[0].operands == (FieldRef("baseline"),)
