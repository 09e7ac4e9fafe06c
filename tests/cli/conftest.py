"""Fixtures of the CLI tests: planted checkpoints shared by the module, a clean working folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import Runs, build_runs

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Checkpoints no test may write into (the snapshot test proves sparsecheck does not)."""
    return build_runs(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in ``tmp_path`` (the default spec folder and cache folder), with no entry points
    of installed third-party sparsecheck plugins (they could add metrics or options), and not
    as inside GitHub Actions (whose annotations a test asks for when it wants them)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
