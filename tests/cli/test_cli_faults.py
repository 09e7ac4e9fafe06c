"""Fault injection through the real console: a plugin that exits, SIGINT at several points, a
worker killed mid-run, a shard truncated mid-run, outputs on a full device, a read-only file
system (a fake writer), a FIFO and stdout.  Each case asserts the exit code, one stderr line
naming the culprit, and that no partial or green-looking report is left behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from cli_support import Runs, check_yaml, run_cli, write_spec

from sparsecheck.exitcodes import ExitCode


def _console(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "SPARSECHECK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sparsecheck", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _project(root: Path, runs: Runs, plugin: str) -> Path:
    """A spec folder with a copy of the checkpoints, one passing check and a local plugin."""
    for key in ("base", "rl_a"):
        shutil.copytree(runs.root / key, root / key)
    (root / "sparsecheck_plugin.py").write_text(textwrap.dedent(plugin))
    spec = "version: 1\ncheckpoints: {base: base, rl_a: rl_a}\nchecks:\n" + check_yaml(
        "a", "rl_a", "{gt: 0.5}"
    )
    return write_spec(root, spec)


_REPORTS = ("r.json", "r.xml", "r.md", "r.html")


def _report_args(root: Path) -> list[str]:
    return ["--json", "r.json", "--junitxml", "r.xml", "--md", "r.md", "--html", "r.html"]


def _no_green_report(root: Path) -> None:
    """Each report is absent, or says the run did not pass."""
    for name in _REPORTS:
        path = root / name
        if not path.exists():
            continue
        text = path.read_text()
        if name == "r.json":
            assert json.loads(text)["exitstatus"] != ExitCode.OK
        elif name == "r.xml":
            assert 'errors="0"' not in text and "interrupted" in text, text
        else:
            assert "interrupted" in text and "✅" not in text.split("\n", 1)[0], text[:300]


@pytest.mark.parametrize("where", ["import", "collection", "metric"])
def test_a_plugin_calling_sys_exit_is_never_a_pass(runs: Runs, tmp_path: Path, where: str) -> None:
    body = {
        "import": "import sys\nsys.exit(0)\n",
        "collection": (
            "import sys\nfrom sparsecheck import hookimpl\n\n@hookimpl\n"
            "def sparsecheck_collection_modifyitems(config, checks):\n    sys.exit(0)\n"
        ),
        "metric": (
            "import sys\nfrom sparsecheck import hookimpl\n\n@hookimpl\n"
            "def sparsecheck_read_progress(progress):\n    sys.exit(0)\n"
        ),
    }[where]
    _project(tmp_path, runs, body)
    process = _console("run", *_report_args(tmp_path), cwd=tmp_path)
    assert process.returncode == ExitCode.INTERNAL_ERROR
    line = _one_line(process.stderr)
    assert "sparsecheck_plugin.py:" in line and "called sys.exit(0)" in line
    _no_green_report(tmp_path)


_SIGINT_AT = {
    "collection": "sparsecheck_collection_modifyitems(config, checks)",
    "read": "sparsecheck_read_progress(progress)",
    "report": "sparsecheck_check_report(outcome)",
}


@pytest.mark.parametrize("point", list(_SIGINT_AT))
def test_sigint_at_any_point_leaves_no_green_report(runs: Runs, tmp_path: Path, point: str) -> None:
    plugin = f"""
        import os, signal
        from sparsecheck import hookimpl

        @hookimpl
        def {_SIGINT_AT[point]}:
            os.kill(os.getpid(), signal.SIGINT)
        """
    _project(tmp_path, runs, plugin)
    process = _console("run", "--no-cache", *_report_args(tmp_path), cwd=tmp_path)
    assert process.returncode == ExitCode.INTERRUPTED
    assert _one_line(process.stderr) == "sparsecheck: interrupted"
    _no_green_report(tmp_path)
    if (tmp_path / "r.xml").exists():
        assert '<testcase classname="sparsecheck" name="interrupted"' in (tmp_path / "r.xml").read_text()


def test_a_killed_worker_is_one_line_exit_3(runs: Runs, tmp_path: Path) -> None:
    plugin = """
        import multiprocessing, os, signal
        from sparsecheck import hookimpl
        from sparsecheck.engine import _prefetch

        _tasks = _prefetch._tasks  # one tensor per task: tasks are still queued at the kill
        _prefetch._tasks = lambda names, nbytes, least=1: _tasks(names, nbytes, 1)

        @hookimpl
        def sparsecheck_read_progress(progress):
            if progress.tensors_done == 1:
                for child in multiprocessing.active_children():
                    os.kill(child.pid, signal.SIGKILL)
        """
    _project(tmp_path, runs, plugin)
    process = _console("run", "--no-cache", "--workers", "2", *_report_args(tmp_path), cwd=tmp_path)
    assert process.returncode == ExitCode.INTERNAL_ERROR, process.stdout + process.stderr
    line = _one_line(process.stderr)
    assert line.startswith("sparsecheck: error: a worker process died")
    _no_green_report(tmp_path)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_shard_truncated_during_the_run_is_exit_4_naming_it(
    runs: Runs, tmp_path: Path, workers: str
) -> None:
    plugin = """
        import os
        from sparsecheck import hookimpl

        @hookimpl
        def sparsecheck_read_progress(progress):
            if progress.tensors_done == 1:
                os.truncate("rl_a/model-00001-of-00002.safetensors", 1000)
        """
    _project(tmp_path, runs, plugin)
    assert (tmp_path / "rl_a" / "model-00001-of-00002.safetensors").exists()
    process = _console("run", "--no-cache", "--workers", workers, *_report_args(tmp_path), cwd=tmp_path)
    assert process.returncode == ExitCode.USAGE_ERROR, process.stdout + process.stderr
    line = _one_line(process.stderr)
    assert "rl_a/model-00001-of-00002.safetensors: changed during the run" in line
    assert "size went from" in line
    _no_green_report(tmp_path)


def _full_device(folder: Path) -> Path:
    """A copy of /dev/full (a character device: every write fails with ENOSPC)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    target = folder / "full"
    try:
        os.mknod(target, 0o666 | 0o020000, os.stat("/dev/full").st_rdev)
    except PermissionError:
        pytest.skip("making a device node needs root")
    return target


@pytest.mark.parametrize("option", ["--json", "--junitxml", "--md", "--html"])
def test_a_report_on_a_full_device_is_exit_4_naming_it_and_the_node_stays(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    full = _full_device(tmp_path)
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}"))
    result = run_cli(capsys, "run", spec, option, full)
    assert result.code == ExitCode.USAGE_ERROR
    line = _one_line(result.err)
    assert f"option {option}: cannot write {full}: No space left on device" in line
    assert full.is_char_device()  # never replaced by a regular file


def test_mask_output_on_a_full_device_is_exit_4_naming_it(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _full_device(tmp_path)
    result = run_cli(capsys, "mask", runs.base, runs.tuned["rl_a"], "-o", full)
    assert result.code == ExitCode.USAGE_ERROR
    assert f"option -o / output: cannot write {full}: No space left on device" in _one_line(result.err)
    assert "OSError" not in result.out + result.err and full.is_char_device()


@pytest.mark.parametrize("command", ["mask", "json"])
def test_outputs_on_a_read_only_file_system_are_exit_4_naming_the_path(
    runs: Runs,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    import sparsecheck._atomic

    monkeypatch.setattr(sparsecheck._atomic.tempfile, "mkstemp", read_only)
    target = tmp_path / "out" / "file"
    if command == "mask":
        result = run_cli(capsys, "mask", runs.base, runs.tuned["rl_a"], "-o", target)
        text = _one_line(result.err)
        assert f"option -o / output: cannot write {target}: Read-only file system" in text
    else:
        result = run_cli(capsys, "diff", runs.base, runs.tuned["rl_a"], "--json", target)
        assert f"option --json: cannot write {target}: Read-only file system" in _one_line(result.err)
    assert result.code == ExitCode.USAGE_ERROR
    assert not target.exists()


def test_a_report_to_a_fifo_is_written_through_it(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}"))
    result = run_cli(capsys, "run", spec, "--junitxml", fifo)
    reader.join(timeout=60)
    assert result.code == ExitCode.OK
    assert fifo.is_fifo()  # the node is still a FIFO, not a regular file renamed over it
    assert received and b'<testsuite name="sparsecheck"' in received[0]


@pytest.mark.parametrize("option", ["--json", "--md"])
def test_dash_writes_the_report_to_stdout_and_the_terminal_report_to_stderr(
    runs: Runs, tmp_path: Path, option: str
) -> None:
    process = _console("diff", runs.base, runs.tuned["rl_a"], option, "-", cwd=tmp_path)
    assert process.returncode == ExitCode.OK, process.stderr
    if option == "--json":
        assert json.loads(process.stdout)["summary"]["passed"] == 1
    else:
        assert process.stdout.startswith("## ✅ sparsecheck: 1 passed")
    assert "update_sparsity" in process.stderr and not (tmp_path / "-").exists()
