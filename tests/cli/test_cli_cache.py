"""The result cache: damaged entries are recomputed with a warning, never returned; the cache
folder never lands in a checkpoint folder and is tagged for backup tools and git."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import Runs, check_yaml, run_cli, write_spec

from sparsecheck.exitcodes import ExitCode


def _tamper_payload(edit: Callable[[dict], None]) -> Callable[[str], str]:
    def tamper(text: str) -> str:
        checksum, _, payload = text.partition("\n")
        data = json.loads(payload)
        edit(data)
        return checksum + "\n" + json.dumps(data)

    return tamper


def _flip_a_digit(text: str) -> str:
    at = text.index('"sparsity": ') + len('"sparsity": 0.')
    digit = text[at]
    return text[:at] + ("1" if digit != "1" else "2") + text[at + 1 :]


DAMAGE: dict[str, Callable[[str], str]] = {
    "flipped-digit": _flip_a_digit,
    "a-string": lambda text: '"not a result"',
    "groups-list": _tamper_payload(lambda d: d.update(groups=[])),
    "fields-empty": _tamper_payload(lambda d: d.update(fields={})),
    "truncated": lambda text: text[: len(text) // 2],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_entry_is_recomputed_with_a_warning(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}"))
    first = run_cli(capsys, "run", "--json", tmp_path / "first.json", spec)
    assert first.code == ExitCode.OK and first.err == ""
    (entry,) = (tmp_path / ".sparsecheck_cache" / "results").glob("*.json")
    entry.write_text(DAMAGE[damage](entry.read_text()))
    second = run_cli(capsys, "run", "--json", tmp_path / "second.json", spec)
    assert second.code == ExitCode.OK
    (warning,) = second.err.strip().splitlines()
    assert warning.startswith(f"sparsecheck: warning: {entry}: damaged cache entry")
    want, got = (json.loads((tmp_path / f"{n}.json").read_text())["checks"][0] for n in ("first", "second"))
    assert got["cached"] is False and got["result"] == want["result"]
    assert got["value"] == pytest.approx(runs.sparsity["rl_a"])
    third = run_cli(capsys, "run", "--json", tmp_path / "third.json", spec)  # stored afresh
    assert third.err == "" and json.loads((tmp_path / "third.json").read_text())["checks"][0]["cached"]


def test_the_cache_folder_is_tagged_for_backup_tools_and_git(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.99}"))
    assert run_cli(capsys, "run", spec).code == ExitCode.CHECKS_FAILED
    cache = tmp_path / ".sparsecheck_cache"
    assert (cache / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    assert (cache / ".gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.parametrize("inside", ["folder", "subfolder"])
def test_running_from_inside_a_checkpoint_folder_writes_nothing_there(
    runs: Runs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    inside: str,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes((runs.base / "model.safetensors").read_bytes())
    cwd = checkpoint if inside == "folder" else checkpoint / "notes"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    spec = write_spec(
        tmp_path / "specs",
        runs.header()
        + "checks:\n"
        + check_yaml("a", "rl_a", "{gt: 0.99}")
        + check_yaml("b", "rl_b", "{gt: 0.1}"),
    )
    before = sorted(p.name for p in checkpoint.rglob("*"))
    for _ in range(2):  # the second run reads the cache and rewrites the last-failed list
        assert run_cli(capsys, "run", spec).code == ExitCode.CHECKS_FAILED
    assert sorted(p.name for p in checkpoint.rglob("*")) == before
    (used,) = (tmp_path / "user-cache" / "sparsecheck" / "runs").iterdir()
    assert (used / "results").is_dir() and (used / "CACHEDIR.TAG").is_file()


def test_with_the_cache_off_no_key_is_computed(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key reads and hashes the metrics' sources and fingerprints the checkpoints: wasted work
    when nothing is looked up or stored."""
    from sparsecheck.engine._cache import ResultCache

    def no_key(*args: object) -> str:
        raise AssertionError("a cache key was computed with the cache off")

    monkeypatch.setattr(ResultCache, "key", no_key)
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}"))
    result = run_cli(capsys, "run", "--no-cache", spec)
    assert result.code == ExitCode.OK, result.err
    assert not (tmp_path / ".sparsecheck_cache" / "results").exists()
