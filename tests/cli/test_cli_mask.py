"""``sparsecheck mask`` and ``diff --metrics/--mask-out``: masks equal the planted truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_cli

from sparsecheck.exitcodes import ExitCode
from sparsecheck.metrics._maskfile import MaskFile
from sparsecheck.testing import planted_pair


@pytest.fixture
def pair(tmp_path: Path):  # type: ignore[no-untyped-def]
    return planted_pair(tmp_path / "pair", fraction=0.3, dtype=torch.float32)


def test_mask_file_holds_the_planted_mask(pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "masks" / "rl.mask.safetensors"
    before = sorted(p.name for p in pair.tuned.iterdir())
    result = run_cli(capsys, "mask", pair.base, pair.tuned, "-o", out)
    assert result.code == ExitCode.OK, result.err
    with MaskFile.open(out) as mask:
        assert set(mask.names()) == set(pair.masks)
        for name, planted in pair.masks.items():
            assert np.array_equal(mask.read(name), planted.numpy())
        assert mask.metadata["policy"] == "atol"
        assert mask.metadata["tuned_source"].endswith("tuned")
    assert sorted(p.name for p in pair.tuned.iterdir()) == before  # nothing written beside the weights
    assert result.out.rstrip().endswith(f"mask written to {out}")


def test_mask_with_a_relative_output_writes_it_in_the_current_folder(  # type: ignore[no-untyped-def]
    pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "mask", pair.base, pair.tuned, "-o", "rel.mask.safetensors")
    assert result.code == ExitCode.OK, result.err
    assert (tmp_path / "rel.mask.safetensors").is_file()  # the CLI tests run in tmp_path
    assert result.out.rstrip().endswith(f"mask written to {tmp_path / 'rel.mask.safetensors'}")


def test_mask_policy_and_selection(pair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "norms.safetensors"
    result = run_cli(
        capsys, "mask", pair.base, pair.tuned, "-o", out, "--policy", "exact", "--include", "*norm*"
    )
    assert result.code == ExitCode.OK, result.err
    with MaskFile.open(out) as mask:
        assert mask.names() and all("norm" in n for n in mask.names())
        assert mask.metadata["policy"] == "exact"


def test_diff_runs_several_metrics_and_writes_the_mask(
    pair,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    report, out = tmp_path / "r.json", tmp_path / "m.safetensors"
    metrics = "update_sparsity,layernorm_sparsity,tolerance_sweep"
    result = run_cli(
        capsys, "diff", pair.base, pair.tuned, "--metrics", metrics, "--mask-out", out, "--json", report
    )
    assert result.code == ExitCode.OK, result.err
    checks = {c["metric"]: c for c in json.loads(report.read_text())["checks"]}
    assert set(checks) == {"update_sparsity", "layernorm_sparsity", "tolerance_sweep", "update_mask"}
    assert checks["update_sparsity"]["value"] == pytest.approx(pair.sparsity)
    assert checks["update_mask"]["value"] == pytest.approx(1 - pair.sparsity)
    norms = [m for n, m in pair.masks.items() if "norm" in n]
    norm_sparsity = 1 - sum(int(m.sum()) for m in norms) / sum(m.numel() for m in norms)
    assert checks["layernorm_sparsity"]["value"] == pytest.approx(norm_sparsity)
    with MaskFile.open(out) as mask:
        assert sum(mask.count(n) for n in mask.names()) == pair.changed


def test_diff_refuses_a_metric_that_is_not_over_a_pair(pair, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(capsys, "diff", pair.base, pair.tuned, "--metrics", "weight_similarity")
    assert result.code == ExitCode.USAGE_ERROR
    assert "weight_similarity" in result.err and "Traceback" not in result.err


def test_mask_needs_an_output(pair, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(capsys, "mask", pair.base, pair.tuned)
    assert result.code == ExitCode.USAGE_ERROR
    assert "--output" in result.err
