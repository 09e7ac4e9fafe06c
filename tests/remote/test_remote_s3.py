"""Checkpoints in S3 (moto's server on 127.0.0.1): folders found by listing, numbers equal to local."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import PlantedPair


def _report(capsys: pytest.CaptureFixture[str], path: Path, base: str, tuned: str) -> Any:
    code = main(
        [
            "diff",
            base,
            tuned,
            "--metrics",
            "update_sparsity,update_norm",
            "--per",
            "layer",
            "--json",
            str(path),
        ]
    )
    capsys.readouterr()
    assert code in (ExitCode.OK, ExitCode.CHECKS_FAILED)
    return json.loads(path.read_text())


def test_diff_in_s3_equals_local(
    s3_bucket: str, pair: PlantedPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = _report(capsys, tmp_path / "local.json", str(pair.base), str(pair.tuned))
    remote = _report(capsys, tmp_path / "s3.json", f"{s3_bucket}/base", f"{s3_bucket}/tuned/")
    assert [c["result"] for c in remote["checks"]] == [c["result"] for c in local["checks"]]
    assert remote["checks"][0]["value"] == pytest.approx(pair.sparsity)
    formats = {c["source"]: c["format"] for c in remote["checkpoints"]}
    assert formats == {
        f"{s3_bucket}/base": "safetensors-sharded",
        f"{s3_bucket}/tuned/": "safetensors-sharded",
    }
    assert "testing-secret" not in (tmp_path / "s3.json").read_text()


def test_missing_object_and_bucket_are_one_line_exit_4(
    s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for base, culprit in (
        (f"{s3_bucket}/nothing-here", "nothing-here"),
        ("s3://no-such-bucket/x", "no-such-bucket"),
    ):
        code = main(["diff", base, f"{s3_bucket}/tuned"])
        out = capsys.readouterr().err
        assert code == ExitCode.USAGE_ERROR
        [line] = [line for line in out.splitlines() if culprit in line]
        assert "BASE" in line


def test_fingerprint_from_etags_in_the_listing(s3_bucket: str) -> None:
    from sparsecheck.checkpoints._remote import open_url

    base, tuned, again = (open_url(f"{s3_bucket}/{side}") for side in ("base", "tuned", "base"))
    assert base.fingerprint() == again.fingerprint() != tuned.fingerprint()
