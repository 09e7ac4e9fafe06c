"""``sparsecheck validate``, ``metrics`` and ``--version``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_support import Runs, check_yaml, run_cli, shown, write_spec

import sparsecheck
from sparsecheck.exitcodes import ExitCode
from sparsecheck.metrics.update_sparsity import UpdateSparsity


def test_validate_counts_checks_without_reading_checkpoints(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = "checkpoints:\n  base: no/such/base\n  rl_a: no/such/rl_a\n"
    write_spec(
        tmp_path / "specs",
        f"version: 1\n{gone}checks:\n{check_yaml('a', 'rl_a', '{gt: 0.5}')}",
        "a.sparsecheck.yaml",
    )
    write_spec(
        tmp_path / "specs" / "sub",
        runs.header()
        + "checks:\n"
        + check_yaml("b", "rl_a", "{gt: 0.5}")
        + "  - id: c\n    metric: update_sparsity\n    parametrize: {run: [rl_a, rl_b]}\n"
        "    args: {base: base, tuned: '${run}'}\n",
        "b.sparsecheck.yaml",
    )
    result = run_cli(capsys, "validate", tmp_path / "specs")
    assert result.code == ExitCode.OK, result.err
    assert result.out.strip() == "ok: 4 checks in 2 spec files"


def test_validate_reports_a_bad_spec(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(
        tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}", "per: galaxy")
    )
    result = run_cli(capsys, "validate", spec)
    assert result.code == ExitCode.USAGE_ERROR
    assert re.fullmatch(rf"{re.escape(str(shown(spec)))}:\d+:\d+: .*galaxy.*\n", result.err)
    assert result.out == "failed: 1 error in 1 of 1 spec files\n"


def test_validate_with_nothing_to_validate_is_exit_5(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "validate").code == ExitCode.NO_CHECKS_COLLECTED


def test_validate_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "validate", "--schema")
    assert result.code == ExitCode.OK
    schema = json.loads(result.out)
    assert schema["type"] == "object"
    assert {"version", "checkpoints", "checks"} <= set(schema["properties"])


def test_metrics_lists_update_sparsity(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "metrics")
    assert result.code == ExitCode.OK
    assert re.search(r"^update_sparsity\s+update_sparsity\s+sparsity\s", result.out, re.M)
    assert "update_sparsity arguments:" not in result.out


def test_metrics_verbose_lists_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "metrics", "-v").out
    section = out.split("update_sparsity arguments:\n", 1)[1].split("\n\n", 1)[0]
    listed = [line.split()[0] for line in section.splitlines()[2:]]
    assert listed == [param.name for param in UpdateSparsity.all_params()]
    assert re.search(r"^base\s+checkpoint\s+required\s", section, re.M)
    assert re.search(r"^policy\s+choice exact\|atol\|rtol\s+'atol'\s", section, re.M)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "--version")
    assert result.code == ExitCode.OK
    assert result.out.strip() == f"sparsecheck, version {sparsecheck.__version__}"


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "rnu")
    assert result.code == ExitCode.USAGE_ERROR
    assert result.err.startswith("sparsecheck: error: No such command 'rnu'")


def test_no_arguments_print_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys)
    assert result.code == ExitCode.OK
    assert result.out.startswith("Usage: sparsecheck [OPTIONS] COMMAND [ARGS]...")
    assert all(command in result.out for command in ("diff", "metrics", "run", "validate"))


def test_validate_schema_has_an_id_and_each_metrics_args(capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    schema = json.loads(run_cli(capsys, "validate", "--schema").out)
    assert schema["$id"] == "urn:sparsecheck:spec:1"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    def errors(args: str) -> list[str]:
        document = {
            "version": 1,
            "checks": [{"id": "a", "metric": "update_sparsity", "args": json.loads(args)}],
        }
        return [error.message for error in validator.iter_errors(document)]

    assert errors('{"base": "b", "tuned": "t", "policy": "atol", "tol": 1e-5}') == []
    assert errors('{"base": "b", "tuned": "t", "tol": "${tol}"}') == []
    assert errors('{"base": "b", "polcy": "atol"}')  # an unknown argument
    assert errors('{"base": "b", "policy": "fuzzy"}')  # not a choice
    (rule,) = [
        r
        for r in schema["$defs"]["checkFields"]["allOf"]
        if r["if"]["properties"]["metric"]["const"] == "update_sparsity"
    ]
    assert rule["then"]["properties"]["args"]["properties"]["policy"]["default"] == "atol"


def test_validate_report_schema_validates_a_real_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jsonschema

    from sparsecheck.testing import planted_pair

    pair = planted_pair(tmp_path / "pair", fraction=0.2)
    spec = tmp_path / "s.sparsecheck.yaml"
    spec.write_text(
        f"version: 1\ncheckpoints: {{base: '{pair.base}', tuned: '{pair.tuned}'}}\nchecks:\n"
        "  - id: a\n    metric: update_sparsity\n    args: {base: base, tuned: tuned}\n"
        "    per: layer\n    expect: {gt: 0.5}\n"
        "  - {id: b, metric: update_sparsity, args: {base: base, tuned: tuned}, skip: later}\n"
    )
    result = run_cli(capsys, "run", spec, "--json", "-")
    report = json.loads(result.out)
    assert report["schema_version"] == 1
    schema = json.loads(run_cli(capsys, "validate", "--report-schema").out)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(report, schema)
    report["checks"][0]["status"] = "MAYBE"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema)
