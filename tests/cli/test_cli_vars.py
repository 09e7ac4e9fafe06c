"""``--var NAME=VALUE`` overrides a spec's ``vars:`` (typed like YAML) and may add variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import Runs, run_cli, write_spec

from sparsecheck.exitcodes import ExitCode

SPEC = """version: 1
vars: {{root: nowhere, threshold: 2.0}}
checkpoints: {{base: "${{root}}/base", tuned: "{tuned}"}}
checks:
  - {{id: a, metric: update_sparsity, args: {{base: base, tuned: tuned}}, expect: {{lt: "${{threshold}}"}}}}
  - {{id: b, metric: update_sparsity, args: {{base: base, tuned: tuned, tol: "${{tol}}"}}}}
"""


def _spec(runs: Runs, tmp_path: Path) -> Path:
    return write_spec(tmp_path, SPEC.format(tuned=runs.tuned["rl_a"]))


def test_vars_override_and_add(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(runs, tmp_path)
    root = f"--var=root={runs.base.parent}"
    passing = run_cli(capsys, "run", spec, root, "--var", "tol=1e-5", "--var", "threshold=0.99")
    assert passing.code == ExitCode.OK, passing.out + passing.err
    failing = run_cli(capsys, "run", spec, root, "--var", "tol=1e-5", "--var", "threshold=0.01")
    assert failing.code == ExitCode.CHECKS_FAILED


def test_unset_variable_without_var_is_a_usage_error(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(runs, tmp_path)
    result = run_cli(capsys, "run", spec, f"--var=root={runs.base.parent}")
    assert result.code == ExitCode.USAGE_ERROR
    assert "tol" in result.err


def test_malformed_var(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "run", _spec(runs, tmp_path), "--var", "no-equals-sign")
    assert result.code == ExitCode.USAGE_ERROR
    assert "NAME=VALUE" in result.err


def test_a_var_no_spec_uses_is_a_warning_naming_the_close_match(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(runs, tmp_path)
    root = f"--var=root={runs.base.parent}"
    result = run_cli(capsys, "run", spec, root, "--var", "tol=1e-5", "--var", "treshold=0.01")
    assert result.code == ExitCode.OK  # the typo changed nothing: threshold is still 2.0
    assert result.err.strip().splitlines() == [
        "sparsecheck: warning: --var treshold: no spec file uses ${treshold} (did you mean 'threshold'?)"
    ]
    used = run_cli(capsys, "run", spec, root, "--var", "tol=1e-5")
    assert "warning" not in used.err
