"""Numbers at the edges through the CLI: non-finite tolerances are refused with one line; a change
to or from ±inf is changed under every policy and shows as an infinite ``abs_delta_max``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from cli_support import Runs, run_cli, write_spec

from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import write_checkpoint


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", ["diff", "mask"])
@pytest.mark.parametrize("tol", ["nan", "inf", "-inf"])
def test_a_non_finite_tol_option_is_one_line_exit_4(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, tol: str
) -> None:
    extra = ["-o", tmp_path / "m.safetensors"] if command == "mask" else []
    result = run_cli(capsys, command, runs.base, runs.tuned["rl_a"], f"--tol={tol}", *extra)
    assert result.code == ExitCode.USAGE_ERROR
    line = _one_error_line(result.err)
    assert "--tol" in line and "finite number" in line
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_a_non_finite_tol_in_a_spec_names_the_line(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    spec = write_spec(
        tmp_path,
        runs.header()
        + "checks:\n  - id: a\n    metric: update_sparsity\n"
        + f"    args: {{base: base, tuned: rl_a, tol: {value}}}\n    expect: {{gt: 0.5}}\n",
    )
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.USAGE_ERROR
    line = _one_error_line(result.err)
    assert f"{spec.name}:{len(runs.header().splitlines()) + 4}:" in line
    assert "args.tol: expected a finite number" in line


@pytest.mark.parametrize("policy", ["exact", "atol", "rtol"])
def test_changes_to_and_from_inf_are_changed_under_every_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str
) -> None:
    inf = float("inf")
    base = write_checkpoint(tmp_path / "base", {"w": torch.tensor([inf, 0.25, inf, 1.0])})
    tuned = write_checkpoint(tmp_path / "tuned", {"w": torch.tensor([-inf, inf, 0.25, 1.0])})
    result = run_cli(capsys, "diff", base, tuned, "--policy", policy, "--json", tmp_path / "r.json")
    assert result.code == ExitCode.OK, result.err
    (check,) = json.loads((tmp_path / "r.json").read_text())["checks"]
    assert check["result"]["fields"]["changed"] == 3
    assert check["result"]["fields"]["sparsity"] == pytest.approx(0.25)
    assert check["result"]["fields"]["abs_delta_max"] is None  # JSON writes non-finite numbers as null
    assert re.search(r"^\s*abs_delta_max\s+inf$", result.out, re.MULTILINE), result.out
