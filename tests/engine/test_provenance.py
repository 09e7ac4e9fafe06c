"""``--hash``: a content hash of every tensor read, in the JSON report; ``sparsecheck verify``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.numpy import load_file, save_file

from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import PlantedPair, planted_pair


@pytest.fixture
def pair(tmp_path: Path) -> PlantedPair:
    return planted_pair(tmp_path, dtype=torch.float32, fraction=0.2)


def _hashed_report(tmp_path: Path, pair: PlantedPair, capsys: pytest.CaptureFixture[str], *more: str) -> Any:
    report = tmp_path / "report.json"
    code = main(["diff", str(pair.base), str(pair.tuned), "--hash", "--json", str(report), "-q", *more])
    capsys.readouterr()
    assert code == ExitCode.OK
    return json.loads(report.read_text())


def _expected(folder: Path) -> dict[str, str]:
    """BLAKE2b-128 of dtype, shape and bytes, computed here from safetensors' own loader."""
    return {
        name: hashlib.blake2b(f"{a.dtype.str}{a.shape}".encode() + a.tobytes(), digest_size=16).hexdigest()
        for name, a in load_file(str(folder / "model.safetensors")).items()
    }


def test_every_tensor_read_is_hashed(
    tmp_path: Path, pair: PlantedPair, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _hashed_report(tmp_path, pair, capsys)
    by_path = {Path(c["path"]): c for c in report["checkpoints"]}
    for folder in (pair.base, pair.tuned):
        entry = by_path[folder.resolve()]
        assert entry["tensor_hashes"] == _expected(folder)
        assert len(entry["content_hash"]) == 32
    assert by_path[pair.base.resolve()]["content_hash"] != by_path[pair.tuned.resolve()]["content_hash"]


def test_hashes_also_when_results_are_cached(
    tmp_path: Path, pair: PlantedPair, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    first = _hashed_report(tmp_path, pair, capsys, "--cache-dir", str(cache))
    second = _hashed_report(tmp_path, pair, capsys, "--cache-dir", str(cache))
    assert [c["tensor_hashes"] for c in first["checkpoints"]] == [
        c["tensor_hashes"] for c in second["checkpoints"]
    ]


def test_verify(tmp_path: Path, pair: PlantedPair, capsys: pytest.CaptureFixture[str]) -> None:
    _hashed_report(tmp_path, pair, capsys)
    report = tmp_path / "report.json"
    assert main(["verify", str(report), str(pair.tuned)]) == ExitCode.OK
    assert f"matches {pair.tuned.resolve()}" in capsys.readouterr().out
    copy = tmp_path / "copy"
    shutil.copytree(pair.tuned, copy)
    assert main(["verify", str(report), str(copy)]) == ExitCode.OK  # same content elsewhere
    tensors = load_file(str(copy / "model.safetensors"))
    tensors["model.norm.weight"] = tensors["model.norm.weight"].copy()
    tensors["model.norm.weight"][3] += 1e-3
    save_file(tensors, str(copy / "model.safetensors"))
    capsys.readouterr()
    assert main(["verify", str(report), str(copy)]) == ExitCode.CHECKS_FAILED
    assert "tensor 'model.norm.weight' differs" in capsys.readouterr().out


def test_verify_needs_a_hashed_report(
    tmp_path: Path, pair: PlantedPair, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "plain.json"
    main(["diff", str(pair.base), str(pair.tuned), "--json", str(report), "-q"])
    capsys.readouterr()
    assert main(["verify", str(report), str(pair.base)]) == ExitCode.USAGE_ERROR
    assert "has no tensor hashes: write it with --json FILE --hash" in capsys.readouterr().err
