"""``${env:X}`` and ``${name}``: substituted after parsing, into strings only, typed when whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_support import HEADER, load, load_error, where

from sparsecheck.errors import Location, SpecError
from sparsecheck.spec._located import to_plain
from sparsecheck.spec._variables import Variables
from sparsecheck.spec._yaml import load_yaml

HERE = Location("f.yaml", 4, 2)


def test_a_whole_reference_keeps_the_variable_type() -> None:
    variables = Variables({"tol": 1e-5, "n": 3, "runs": ["a", "b"], "off": None}, environ={})
    assert variables.substitute("${tol}", HERE) == 1e-5
    assert variables.substitute("${n}", HERE) == 3
    assert variables.substitute("${runs}", HERE) == ["a", "b"]
    assert variables.substitute("${off}", HERE) is None


def test_inside_a_longer_string_the_value_is_written_with_str() -> None:
    variables = Variables({"tol": 0.5, "n": 3}, environ={"ROOT": "/data"})
    assert variables.substitute("run-${n}-tol${tol}", HERE) == "run-3-tol0.5"
    assert variables.substitute("${env:ROOT}/sft", HERE) == "/data/sft"
    assert variables.substitute("${env:ROOT}", HERE) == "/data"


def test_dollar_dollar_brace_is_a_literal() -> None:
    variables = Variables({}, environ={})
    assert variables.substitute("cost $${x} and $5", HERE) == "cost ${x} and $5"


def test_substitution_reaches_nested_values_but_never_keys() -> None:
    document = load_yaml("a:\n  ${k}: ['x-${k}', {b: '${k}'}]\n", "f.yaml")
    substituted = Variables({"k": "v"}, environ={}).substitute(document, document.location)
    assert to_plain(substituted) == {"a": {"${k}": ["x-v", {"b": "v"}]}}
    assert substituted["a"].value_location("${k}") == document["a"].value_location("${k}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${nme}", "unknown variable 'nme' (did you mean 'name'?)"),
        (
            "${zzz}",
            "unknown variable 'zzz' (defined: items, name; use ${env:zzz} for an environment variable)",
        ),
        ("${env:SPARSECHECK_TEST_UNSET}", "environment variable 'SPARSECHECK_TEST_UNSET' is not set"),
        ("a ${name", "unterminated '${' in 'a ${name' (write '$${' for a literal)"),
        ("x${items}", "variable 'items' is a list: it can only stand alone as a whole value"),
    ],
)
def test_reference_errors_point_at_the_string(text: str, message: str) -> None:
    variables = Variables({"name": "n", "items": [1]}, environ={})
    with pytest.raises(SpecError) as info:
        variables.substitute(text, HERE)
    assert str(info.value) == f"f.yaml:4:2: {message}"


def test_env_and_vars_in_a_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SC_ROOT", "/data")
    spec = load(
        tmp_path,
        """\
        version: 1
        vars:
          root: ${env:SC_ROOT}/runs
          tol: 1.0e-4
          floor: 0.7
        checkpoints:
          sft: ${root}/sft
          rl_a: {path: "${root}/rl-a", revision: "${env:SC_ROOT}"}
        checks:
          - id: typed
            metric: update_sparsity
            args: {base: sft, tuned: rl_a, tol: "${tol}"}
            expect: {gt: "${floor}"}
            description: "tol ${tol} on $${root}"
        """,
    )
    assert spec.checkpoints["sft"].source == "/data/runs/sft"
    assert spec.checkpoints["rl_a"].source == "/data/runs/rl-a"
    assert spec.checkpoints["rl_a"].revision == "/data"
    (check,) = spec.checks
    assert check.args["tol"] == 1e-4 and isinstance(check.args["tol"], float)
    assert check.expect[0].operands == (0.7,)
    assert check.description == "tol 0.0001 on ${root}"


def test_unset_env_in_a_spec_points_at_its_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SC_MISSING", raising=False)
    text = HEADER.replace("ckpts/rl-b", "${env:SC_MISSING}/rl-b") + "checks: []\n"
    spot = where(tmp_path / "spec.sparsecheck.yaml", text, "${env")
    assert load_error(tmp_path, text) == f"{spot}: environment variable 'SC_MISSING' is not set"


def test_a_variable_never_renames_a_key(tmp_path: Path) -> None:
    text = (
        HEADER
        + """\
vars: {name: tol}
checks:
  - id: a
    metric: update_sparsity
    args: {base: sft, tuned: rl_a, "${name}": 0.1}
"""
    )
    spot = where(tmp_path / "spec.sparsecheck.yaml", text, '"${name}')
    assert load_error(tmp_path, text).startswith(f"{spot}: args: unknown argument '${{name}}'")


def test_vars_may_use_earlier_vars_but_not_later_ones(tmp_path: Path) -> None:
    text = "version: 1\nvars:\n  a: ${b}\n  b: 1\nchecks: []\n"
    spot = where(tmp_path / "spec.sparsecheck.yaml", text, "${b}")
    hint = "(defined: none; use ${env:b} for an environment variable)"
    assert load_error(tmp_path, text) == f"{spot}: unknown variable 'b' {hint}"


def test_a_variable_of_the_wrong_type_is_caught_after_substitution(tmp_path: Path) -> None:
    text = (
        HEADER
        + """\
vars: {floor: high}
checks:
  - id: a
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    expect: {gt: "${floor}"}
"""
    )
    spot = where(tmp_path / "spec.sparsecheck.yaml", text, '"${floor}')
    assert load_error(tmp_path, text) == f"{spot}: expect.gt: expected a number, got 'high'"
