"""A spec naming hub ids runs end to end against a local Hugging Face cache, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_support import run_cli, snapshot, write_spec

from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint

BASE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
TUNED_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def test_hub_ids_resolve_offline_and_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "hf" / "hub"
    repo = cache / "models--org--tiny"
    base = tiny_llama_state_dict(layers=1, dtype=torch.float32)
    tuned, masks = plant_changes(base, 0.25, seed=7)
    write_checkpoint(repo / "snapshots" / BASE_COMMIT, base, config={"model_type": "llama"})
    write_checkpoint(repo / "snapshots" / TUNED_COMMIT, tuned, "sharded", config={"model_type": "llama"})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(BASE_COMMIT)
    (repo / "refs" / "rl").write_text(TUNED_COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    truth = 1 - sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())

    spec = write_spec(
        tmp_path / "suite",
        "version: 1\n"
        "checkpoints:\n"
        "  base: org/tiny\n"
        "  tuned: {path: org/tiny, revision: rl}\n"
        f"  pinned: org/tiny@{TUNED_COMMIT}\n"
        "checks:\n"
        "  - id: by-branch\n"
        "    metric: update_sparsity\n"
        "    args: {base: base, tuned: tuned}\n"
        "    expect: {between: [0.7, 0.8]}\n"
        "  - id: by-commit\n"
        "    metric: update_sparsity\n"
        "    args: {base: base, tuned: pinned}\n"
        "    expect: {between: [0.7, 0.8]}\n",
    )
    before = snapshot(cache)
    report = tmp_path / "r.json"
    result = run_cli(capsys, "run", "--json", report, spec)
    assert result.code == ExitCode.OK, result.out + result.err
    document = json.loads(report.read_text())
    assert [c["value"] for c in document["checks"]] == [pytest.approx(truth, abs=1e-12)] * 2
    paths = {Path(c["path"]) for c in document["checkpoints"]}
    assert paths == {repo / "snapshots" / BASE_COMMIT, repo / "snapshots" / TUNED_COMMIT}
    assert snapshot(cache) == before
