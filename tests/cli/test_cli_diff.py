"""``sparsecheck diff BASE TUNED``: the planted truth on the terminal and in JSON; mismatches."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_support import Arg, Runs, run_cli

from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint


def test_diff_prints_the_planted_sparsity(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "diff", runs.base, runs.tuned["rl_b"])
    assert result.code == ExitCode.OK, result.err
    assert re.search(rf"^\s+sparsity\s+{runs.sparsity['rl_b']:.4g}$", result.out, re.MULTILINE)
    # a first look, not a test run: no pass/fail table, status or counts
    assert "passed" not in result.out and "PASS" not in result.out and "expectation" not in result.out
    assert result.out.rstrip().splitlines()[-1].startswith("read in ")


def test_diff_and_mask_leave_out_spec_run_options(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("diff", "mask"):
        shown = run_cli(capsys, command, "--help").out
        for option in ("--var", "--lf", "-k EXPR", "-m MARKEXPR", "--junitxml", "--strict-warnings"):
            assert option not in shown, (command, option)
        assert "--json" in shown and "--policy" in shown
    assert "--junitxml" in run_cli(capsys, "run", "--help").out


def test_diff_per_layer_shows_each_layer(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "diff", runs.base, runs.tuned["rl_a"], "--per", "layer")
    assert result.code == ExitCode.OK
    assert "per layer:" in result.out
    for layer in ("model.layers.0", "model.layers.1"):
        assert re.search(rf"^{re.escape(layer)}\s+0\.\d+", result.out, re.MULTILINE), result.out


def test_diff_json_value_is_the_planted_truth(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "reports" / "diff.json"
    result = run_cli(capsys, "diff", runs.base, runs.tuned["rl_a"], "--per", "tensor", "--json", report)
    assert result.code == ExitCode.OK
    check = json.loads(report.read_text())["checks"][0]
    assert check["value"] == pytest.approx(runs.sparsity["rl_a"], abs=1e-12)
    tensors = check["result"]["groups"]["tensor"]
    truth = runs.tensor_sparsity["rl_a"]
    assert {name: group["sparsity"] for name, group in tensors.items()} == pytest.approx(truth, abs=1e-12)


def test_policy_exact_sees_changes_below_the_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Changes of 1e-7 are invisible to atol (tol 1e-5) but count under exact."""
    base = tiny_llama_state_dict(layers=1, dtype=torch.float32)
    tiny, masks = plant_changes(base, 0.5, magnitude=1e-7, min_abs_change=0.0)
    write_checkpoint(tmp_path / "base", base)
    write_checkpoint(tmp_path / "tuned", tiny)
    changed = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    paths: list[Arg] = ["diff", tmp_path / "base", tmp_path / "tuned", "--json"]

    assert run_cli(capsys, *paths, tmp_path / "atol.json").code == ExitCode.OK
    assert run_cli(capsys, *paths, tmp_path / "exact.json", "--policy", "exact").code == ExitCode.OK
    atol = json.loads((tmp_path / "atol.json").read_text())["checks"][0]
    exact = json.loads((tmp_path / "exact.json").read_text())["checks"][0]
    assert atol["value"] == 1.0
    assert exact["value"] == pytest.approx(1 - changed / total, abs=1e-12)
    assert exact["result"]["fields"]["policy"] == "exact"


def test_include_and_exclude_select_tensor_names(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "r.json"
    pair: list[Arg] = ["diff", runs.base, runs.tuned["rl_a"], "--per", "tensor", "--json", report]

    def compared(*options: str) -> set[str]:
        assert run_cli(capsys, *pair, *options).code == ExitCode.OK
        return set(json.loads(report.read_text())["checks"][0]["result"]["groups"]["tensor"])

    everything = set(tiny_llama_state_dict(layers=2))
    assert compared("--include", "*mlp*") == {n for n in everything if ".mlp." in n}
    assert compared("--exclude", "*norm*", "--exclude", "lm_head.*") == {
        n for n in everything if "norm" not in n and not n.startswith("lm_head")
    }


@pytest.fixture
def missing_lm_head(runs: Runs, tmp_path: Path) -> Path:
    """A copy of rl_a without ``lm_head.weight``."""
    state = tiny_llama_state_dict(layers=2, dtype=torch.float32)
    del state["lm_head.weight"]
    return write_checkpoint(tmp_path / "no-head", state)


def test_a_tensor_on_one_side_only_is_an_error_saying_how_to_exclude_it(
    runs: Runs, missing_lm_head: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "diff", runs.base, missing_lm_head)
    assert result.code == ExitCode.USAGE_ERROR
    [line] = result.err.strip().splitlines()  # nothing was measured: one error line
    assert "lm_head.weight" in line
    assert "--exclude 'lm_head.weight'" in line and "--on-mismatch skip" in line  # options, not spec syntax
    assert "Traceback" not in result.out + result.err


def test_on_mismatch_skip_lists_the_skipped_tensor(
    runs: Runs, missing_lm_head: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "skip.json"
    result = run_cli(capsys, "diff", runs.base, missing_lm_head, "--on-mismatch", "skip", "--json", report)
    assert result.code == ExitCode.OK
    assert re.search(r"skipped tensors \(1\):\s+lm_head\.weight: only in ", result.out)
    check = json.loads(report.read_text())["checks"][0]
    assert [s["name"] for s in check["result"]["skipped"]] == ["lm_head.weight"]
    assert check["result"]["fields"]["skipped"] == 1
    assert check["value"] == 1.0  # every other tensor is the base's own


def test_diff_leaves_no_last_failed_cache(
    runs: Runs, missing_lm_head: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "diff", runs.base, missing_lm_head).code == ExitCode.USAGE_ERROR
    assert not (tmp_path / ".sparsecheck_cache").exists()


@pytest.mark.parametrize("side", ["BASE", "TUNED"])
def test_an_unopenable_side_is_named(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], side: str
) -> None:
    missing = tmp_path / "nowhere"
    pair = [missing, runs.base] if side == "BASE" else [runs.base, missing]
    result = run_cli(capsys, "diff", *pair)
    assert result.code == ExitCode.USAGE_ERROR
    assert f"{side}: {missing}: no such file or folder" in result.err


def test_a_quiet_diff_prints_no_table_and_imports_no_table_library(runs: Runs, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from sparsecheck.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print('EXIT', code, 'TABULATE', 'tabulate' in sys.modules)\n"
    )
    args = ["diff", runs.base, runs.tuned["rl_a"], "-q", "--json", tmp_path / "r.json", "--workers", "1"]
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "EXIT 0 TABULATE False", done.stdout + done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["checks"][0]["status"] == "PASS"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_diff_with_mask_export_imports_no_yaml_parser_torch_transformers_or_matplotlib(
    runs: Runs, tmp_path: Path, workers: str
) -> None:
    script = (
        "import sys\n"
        "from sparsecheck.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "optional = ('torch', 'transformers', 'matplotlib', 'trl', 'fsspec', 'gguf', 'peft', 'yaml')\n"
        "heavy = [m for m in optional if m in sys.modules]\n"
        "print('EXIT', code, 'HEAVY', heavy)\n"
    )
    args = [
        "diff",
        runs.base,
        runs.tuned["rl_a"],
        "--per",
        "tensor",
        "--metrics",
        "update_sparsity,layernorm_sparsity",
    ]
    args += ["--mask-out", tmp_path / "m.safetensors", "--json", tmp_path / "r.json", "--workers", workers]
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.stdout.strip().splitlines()[-1] == "EXIT 0 HEAVY []", done.stdout + done.stderr


def test_an_unknown_metric_name_gets_did_you_mean(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "diff", runs.base, runs.tuned["rl_a"], "--metrics", "update_sparsty")
    assert result.code == ExitCode.USAGE_ERROR
    expected = "unknown metric 'update_sparsty' (did you mean 'update_sparsity'?)"
    assert result.err.strip() == f"sparsecheck: error: {expected}"
