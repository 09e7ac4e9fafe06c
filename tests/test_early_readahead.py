"""``sparsecheck diff``/``mask`` ask the kernel for both sides' first bytes before the imports; other
commands and other uses of the package do nothing."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsecheck import _early
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise here")


@pytest.fixture(autouse=True)
def collector_back_on() -> Iterator[None]:
    """prepare_command_process pauses the garbage collector; each test leaves it running."""
    yield
    _early.end_of_startup()
    gc.enable()
    gc.unfreeze()


def test_diff_asks_for_both_sides_alternately(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tiny_llama_state_dict(hidden=32, intermediate=64, vocab=64, seed=1)
    write_checkpoint(tmp_path / "a", state, layout="sharded", shards=2)
    write_checkpoint(tmp_path / "b", state)
    single = next((tmp_path / "b").glob("*.safetensors"))
    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, offset, n, advice: asked.append((os.fstat(fd).st_ino, offset))
    )
    monkeypatch.setattr(_early, "_STEP", 4096)
    argv = [
        "/venv/bin/sparsecheck",
        "diff",
        "--per",
        "tensor",
        str(tmp_path / "a"),
        str(single),
    ]
    thread = _early.read_ahead_of_imports(argv)
    assert thread is not None
    thread.join(10)
    shards = sorted((tmp_path / "a").glob("*.safetensors"))
    inode = {f.stat().st_ino: f for f in [*shards, single]}
    files = [inode[i] for i, _ in asked]
    # side a, side b, side a, ... : the order the pass reads in
    assert files[0] == shards[0] and files[1] == single
    assert set(files) == set(inode.values())
    total = sum(f.stat().st_size for f in inode.values())
    assert len(asked) == sum(-(-f.stat().st_size // 4096) for f in inode.values()) and total > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["/venv/bin/sparsecheck", "run", "a", "b"],
        ["/usr/bin/pytest", "diff", "a", "b"],
        ["/venv/bin/sparsecheck", "diff", "missing-a", "missing-b"],
        ["/venv/bin/sparsecheck", "diff"],
    ],
)
def test_nothing_happens_for_other_commands_and_programs(argv: list[str]) -> None:
    assert _early.read_ahead_of_imports(argv) is None


@pytest.mark.parametrize(
    ("argv", "threads"),
    [
        (["/venv/bin/sparsecheck", "run", "specs"], "1"),
        (["-m", "diff", "a", "b", "--workers", "2"], "1"),
        (["/venv/bin/sparsecheck", "run", "specs", "--workers", "1"], None),
        (["/venv/bin/sparsecheck", "run", "specs", "--workers=1"], None),
        (["/venv/bin/python", "script.py"], None),  # the package imported by another program
    ],
)
def test_the_command_gives_numpy_blas_one_thread_unless_one_worker(
    argv: list[str], threads: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    _early.prepare_command_process(argv)
    assert os.environ.get("OPENBLAS_NUM_THREADS") == threads


def test_a_users_blas_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")
    _early.prepare_command_process(["/venv/bin/sparsecheck", "run", "specs"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == "8"


@pytest.mark.parametrize(
    ("argv", "paused"),
    [(["/venv/bin/sparsecheck", "run", "specs"], True), (["/venv/bin/python", "script.py"], False)],
)
def test_the_collector_pauses_for_the_commands_start_up_only(argv: list[str], paused: bool) -> None:
    assert gc.isenabled()
    _early.prepare_command_process(argv)
    assert gc.isenabled() is not paused
    _early.end_of_startup()
    assert gc.isenabled()


def test_the_cli_collects_again_before_its_command_runs() -> None:
    probe = "import gc, sys; sys.argv[0] = 'sparsecheck'; import sparsecheck.cli as cli\n"
    probe += "assert not gc.isenabled()\n"
    probe += "cli.main(['--version']); print(gc.isenabled())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "True"
