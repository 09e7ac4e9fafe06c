from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sparsecheck._atomic import (
    prepare_output_path,
    write_bytes_atomic,
    write_output,
    write_text_atomic,
)
from sparsecheck.errors import UsageError


def test_write_creates_then_replaces_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_text_atomic(target, "first ✓")
    assert target.read_text(encoding="utf-8") == "first ✓"
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["report.json"]


def test_new_file_gets_the_permissions_open_would_give(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    write_text_atomic(atomic, "x")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_failed_replace_keeps_old_content_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.xml"
    target.write_text("old")

    def broken_replace(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.xml"]


def test_prepare_creates_missing_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.md"
    assert prepare_output_path(target, "--md") == target
    assert target.parent.is_dir()
    assert not target.exists()


def test_prepare_refuses_a_directory_naming_option_and_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        prepare_output_path(tmp_path, "--json")
    assert "--json" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_prepare_refuses_a_folder_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="--junitxml"):
        prepare_output_path(blocker / "report.xml", "--junitxml")


def test_write_output_turns_os_errors_into_usage_errors(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "report.json"
    with pytest.raises(UsageError) as info:
        write_output(missing, b"{}", "--json")
    assert "--json" in str(info.value)
    assert str(missing) in str(info.value)
