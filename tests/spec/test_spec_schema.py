"""The shipped JSON Schema: valid, accepts the documented format, and its errors point at the node."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from spec_support import load_error, where

from sparsecheck.spec._schema import load_schema, schema_path

DOCUMENTED = """\
version: 1
vars: {tol: 1.0e-5}
checkpoints:
  sft: ${env:CKPT_ROOT}/sft
  rl_a: {path: "${env:CKPT_ROOT}/rl-a"}
  rl_b: {path: "org/model@main", revision: null}
templates:
  sparse: {metric: update_sparsity, args: {base: sft, policy: atol}, expect: {gt: 0.7}}
checks:
  - id: rl-update-is-sparse
    metric: update_sparsity
    args: {base: sft, tuned: rl_a, policy: atol, tol: 1.0e-5}
    expect: {gt: 0.70}
    warn: {gt: 0.80}
    marks: [gate]
    description: optional text
  - id: every-layer-sparse
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    per: layer
    expect: {ge: 0.60}
    mostly: 0.9
  - id: each-run-sparse
    use: sparse
    parametrize: {run: [rl_a, rl_b]}
    args: {tuned: "${run}"}
    expect: {between: [0.70, 0.99]}
  - id: paired
    metric: update_sparsity
    parametrize_zip: {base: [sft, sft], tuned: [rl_a, rl_b]}
    args: {base: "${base}", tuned: "${tuned}"}
  - id: skipped-one
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    skip: "reason"
  - id: overlap-above-chance
    metric: mask_overlap
    args: {a: 1}
    expect:
      - {field: o1, gt: {field: baseline_o1}}
      - {field: lift_o1, gt: 1.5}
      - {eq: 0.5, tol: 0.01}
      - {ge: "${tol}"}
"""


def test_the_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert load_schema() == schema


def test_the_schema_ships_inside_the_package() -> None:
    import sparsecheck

    assert schema_path().parent == Path(sparsecheck.__file__).parent / "spec"


def test_the_documented_format_is_valid_under_the_schema_alone() -> None:
    document = yaml.safe_load(DOCUMENTED)
    errors = list(jsonschema.Draft202012Validator(load_schema()).iter_errors(document))
    assert errors == []


def test_an_unknown_key_is_invalid_under_the_schema_alone() -> None:
    document = yaml.safe_load(DOCUMENTED.replace("    description:", "    descripton:"))
    errors = list(jsonschema.Draft202012Validator(load_schema()).iter_errors(document))
    assert [error.validator for error in errors] == ["unevaluatedProperties"]


CHECK = """\
version: 1
checks:
  - id: a
    metric: update_sparsity
"""

CASES = [
    # (spec text, needle the error points at, the message after the location)
    ("version: 1\nchekcs: []\n", "chekcs", "unknown key 'chekcs' (did you mean 'checks'?)"),
    (CHECK + "    expct: {gt: 1}\n", "expct", "unknown key 'expct' (did you mean 'expect'?)"),
    (
        CHECK + "    zzz: 1\n",
        "zzz",
        "unknown key 'zzz' (expected one of: args, description, expect, id, marks, metric, mostly, "
        "parametrize, parametrize_zip, per, skip, use, warn)",
    ),
    (
        "version: 2\nchecks: []\n",
        "2",
        "version: unsupported spec version 2 (this sparsecheck reads version 1)",
    ),
    ("version: 1\n", "version", "missing required key 'checks'"),
    ("version: 1\nchecks:\n  - metric: x\n", "metric: x", "checks[0]: missing required key 'id'"),
    ("version: 1\nchecks:\n  - id: a\n    metric: 3\n", "3", "checks[0].metric: expected a string, got 3"),
    ("version: 1\nchecks: {a: 1}\n", "{a", "checks: expected a list, got a mapping"),
    (
        CHECK + "    expect: {gt: abc}\n",
        "abc",
        "checks[0].expect.gt: expected a number or a ${variable}, got 'abc'",
    ),
    (
        CHECK + "    expect: {gt: 1, lt: 2}\n",
        "{gt: 1",
        "checks[0].expect: an expectation needs exactly one of gt, ge, lt, le, eq, between",
    ),
    (
        CHECK + "    expect: {field: o1}\n",
        "{field",
        "checks[0].expect: an expectation needs exactly one of gt, ge, lt, le, eq, between",
    ),
    (CHECK + "    expect: {gt: 1, tol: 0.1}\n", "{gt: 1", "checks[0].expect: tol is only allowed with eq"),
    (
        CHECK + "    warn: [{gt: 1}, {between: [1]}]\n",
        "[1]",
        "checks[0].warn[1].between: expected two bounds [low, high]",
    ),
    (CHECK + "    expect: [{gt: {field: x, y: 1}}]\n", "y: 1", "unknown key 'y' (expected one of: field)"),
    (CHECK + "    expect: 3\n", "3\n", "checks[0].expect: expected a mapping or a list, got 3"),
    (CHECK + "    mostly: 1.5\n", "1.5", "checks[0].mostly: expected a number in (0, 1], got 1.5"),
    (CHECK + "    mostly: 0\n", "0\n", "checks[0].mostly: expected a number in (0, 1], got 0"),
    (CHECK + "    marks: [ok, 'a b']\n", "'a b'", "checks[0].marks[1]: 'a b' is not a mark name"),
    (
        CHECK + "    parametrize: {x: []}\n",
        "[]",
        "checks[0].parametrize.x: expected a non-empty list of values",
    ),
    (CHECK + "    parametrize: {2x: [1]}\n", "2x", "'2x' is not a name (letters, digits and _"),
    (CHECK + "    skip: 3\n", "3\n", "checks[0].skip: expected a string or true or false, got 3"),
    ("version: 1\ncheckpoints:\n  a b: x\nchecks: []\n", "a b", "'a b' is not a valid key"),
    (
        "version: 1\ncheckpoints:\n  a: {path: x, revison: v1}\nchecks: []\n",
        "revison",
        "unknown key 'revison' (did you mean 'revision'?)",
    ),
    (
        "version: 1\ncheckpoints:\n  a: {revision: v1}\nchecks: []\n",
        "{revision",
        "checkpoints.a: missing required key 'path'",
    ),
    (
        "version: 1\ncheckpoints:\n  a: [x]\nchecks: []\n",
        "[x]",
        "checkpoints.a: expected a string or a mapping, got a list",
    ),
    ("version: 1\nvars: {1x: 2}\nchecks: []\n", "1x", "'1x' is not a name"),
    (
        "version: 1\ntemplates:\n  t: {id: x}\nchecks: []\n",
        "id: x",
        "unknown key 'id' (expected one of: args,",
    ),
    (
        "version: 1\ntemplates:\n  t: {use: x}\nchecks: []\n",
        "use: x",
        "unknown key 'use' (expected one of: args,",
    ),
]


@pytest.mark.parametrize(("text", "needle", "message"), CASES)
def test_schema_errors_are_one_line_at_the_offending_node(
    tmp_path: Path, text: str, needle: str, message: str
) -> None:
    error = load_error(tmp_path, text)
    location = where(tmp_path / "spec.sparsecheck.yaml", text, needle)
    assert error.startswith(f"{location}: {message}")
    assert "\n" not in error


def test_the_first_error_in_file_order_is_reported(tmp_path: Path) -> None:
    text = CHECK + "    expect: {gt: abc}\n  - id: b\n    chekcs: 1\n"
    assert load_error(tmp_path, text).startswith(where(tmp_path / "spec.sparsecheck.yaml", text, "abc"))


def test_a_misspelt_key_is_reported_before_the_missing_key_it_causes(tmp_path: Path) -> None:
    text = "version: 1\nchecks:\n  - ide: a\n    metric: update_sparsity\n"
    error = load_error(tmp_path, text)
    assert (
        error
        == f"{where(tmp_path / 'spec.sparsecheck.yaml', text, 'ide')}: unknown key 'ide' (did you mean 'id'?)"
    )
