"""Checkpoints over HTTP by range reads, against a loopback server that counts what it sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from remote_servers import RangeServer

from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import PlantedPair


def _diff_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, base: str, tuned: str, *more: str) -> Any:
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    code = main(
        [
            "diff",
            base,
            tuned,
            "--metrics",
            "update_sparsity,update_norm,tolerance_sweep",
            "--json",
            str(report),
            *more,
        ]
    )
    capsys.readouterr()
    assert code in (ExitCode.OK, ExitCode.CHECKS_FAILED)
    return json.loads(report.read_text())


def _results(report: Any) -> list[Any]:
    return [check["result"] for check in report["checks"]]


def test_diff_over_http_equals_local(
    http: RangeServer, pair: PlantedPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = _diff_json(capsys, tmp_path, str(pair.base), str(pair.tuned), "--per", "tensor")
    remote = _diff_json(capsys, tmp_path, f"{http.url}/base", f"{http.url}/tuned", "--per", "tensor")
    assert _results(remote) == _results(local)
    assert remote["checks"][0]["result"]["value"] == pytest.approx(pair.sparsity)
    files = sum(f.stat().st_size for side in (pair.base, pair.tuned) for f in side.iterdir())
    assert files * 0.95 <= http.sent <= files * 1.05  # every tensor read once, nothing twice
    assert [c["path"] for c in remote["checkpoints"]] == [f"{http.url}/base", f"{http.url}/tuned"]


def test_layernorm_check_reads_under_five_percent(
    http: RangeServer, pair: PlantedPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _diff_json(capsys, tmp_path, f"{http.url}/base", f"{http.url}/tuned", "--include", "*norm*")
    weights = [f for side in (pair.base, pair.tuned) for f in side.glob("*.safetensors")]
    norm_bytes = 2 * 5 * 128 * 2  # two sides, five bfloat16 norms of 128 entries each
    assert report["checks"][0]["result"]["fields"]["compared"] == 5 * 128
    assert norm_bytes <= http.sent < 0.05 * sum(f.stat().st_size for f in weights)


def test_a_single_file_url(http: RangeServer, pair: PlantedPair, capsys: pytest.CaptureFixture[str]) -> None:
    shard = sorted(pair.base.glob("*.safetensors"))[0].name
    code = main(["diff", f"{http.url}/base/{shard}", f"{http.url}/tuned/{shard}"])
    assert code in (ExitCode.OK, ExitCode.CHECKS_FAILED)
    assert "update_sparsity" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fault", "shown"),
    [(404, "not found"), (403, "access denied"), (500, "cannot read"), ("truncate", "truncated response")],
)
def test_a_failing_server_is_one_line_and_exit_4(
    http: RangeServer, pair: PlantedPair, capsys: pytest.CaptureFixture[str], fault: Any, shown: str
) -> None:
    shard = sorted(pair.tuned.glob("*.safetensors"))[-1].name
    http.faults[f"/tuned/{shard}"] = fault
    code = main(["diff", f"{http.url}/base", f"{http.url}/tuned"])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE_ERROR
    [line] = [line for line in captured.err.splitlines() if f"/tuned/{shard}" in line]
    assert shown in line
    assert "Traceback" not in captured.err


def test_no_server_is_one_line_and_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["diff", f"http://127.0.0.1:{port}/base", f"http://127.0.0.1:{port}/tuned"])
    captured = capsys.readouterr()
    assert code == ExitCode.USAGE_ERROR
    [line] = [line for line in captured.err.splitlines() if f"127.0.0.1:{port}/base" in line]
    assert "cannot read" in line and "Traceback" not in captured.err


def test_credentials_in_a_url_are_never_shown(
    http: RangeServer, pair: PlantedPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_password = http.url.replace("http://", "http://alice:s3cret@")
    report = tmp_path / "report.json"
    code = main(["diff", f"{with_password}/base", f"{with_password}/tuned", "--json", str(report)])
    assert code in (ExitCode.OK, ExitCode.CHECKS_FAILED)
    http.faults["/tuned/model.safetensors.index.json"] = 403
    main(["diff", f"{with_password}/base", f"{with_password}/tuned"])
    captured = capsys.readouterr()
    assert "s3cret" not in captured.out + captured.err + report.read_text()
    assert "access denied" in captured.err


def test_fingerprint_from_etags(http: RangeServer, pair: PlantedPair, tmp_path: Path) -> None:
    from sparsecheck.checkpoints._remote import open_url

    readers = [open_url(f"{http.url}/{side}") for side in ("base", "tuned", "base")]
    http.reset()
    prints = [reader.fingerprint() for reader in readers]
    assert http.sent == 0  # sizes and ETags from the requests that opened them
    assert prints[0] == prints[2] != prints[1]
    for reader in readers:
        reader.close()


def test_hashes_over_http_equal_local(
    http: RangeServer, pair: PlantedPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = _diff_json(capsys, tmp_path, str(pair.base), str(pair.tuned), "--hash")
    remote = _diff_json(capsys, tmp_path, f"{http.url}/base", f"{http.url}/tuned", "--hash")
    hashes = [[c["content_hash"] for c in report["checkpoints"]] for report in (remote, local)]
    assert hashes[0] == hashes[1]
    report = tmp_path / "remote.json"
    report.write_text(json.dumps(remote))
    assert main(["verify", str(report), str(pair.tuned)]) == ExitCode.OK
    assert "matches http://127.0.0.1" in capsys.readouterr().out


def test_without_fsspec_a_url_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fsspec", None)  # makes the import fail
    code = main(["diff", "s3://bucket/base", "s3://bucket/tuned"])
    out = capsys.readouterr().err
    assert code == ExitCode.USAGE_ERROR
    expected = "s3://bucket/base: reading a URL needs fsspec, which is not installed: "
    assert expected + "pip install 'sparsecheck[remote]'" in out
