"""Bad input ends in exit 4 and one line naming the file (and line:column or tensor), never a
traceback; sparsecheck never writes into a checkpoint folder."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_support import Arg, Runs, check_yaml, run_cli, shown, snapshot, write_spec

from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

_GOOD_CHECK = check_yaml("a", "rl_a", "{gt: 0.5}")


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sparsecheck: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("body", "culprit", "words"),
    [
        ("checks: [\n  - {id: a, metric: update_sparsity\n", "- {", "bad YAML"),
        (
            "checks:\n  - id: a\n    metric: update_sparsity\n    expct: {gt: 0.5}\n",
            "expct",
            "did you mean 'expect'",
        ),
        (
            "checks:\n  - id: a\n    metric: update_sparsty\n",
            "update_sparsty",
            "did you mean 'update_sparsity'",
        ),
        (
            "checks:\n  - id: a\n    metric: update_sparsity\n    args: {base: base, tuned: rl_a, tol: x}\n",
            "x}",
            "args.tol: expected a number",
        ),
    ],
    ids=["bad-yaml", "unknown-key", "unknown-metric", "wrong-arg-type"],
)
def test_a_bad_spec_is_one_line_with_line_and_column(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, culprit: str, words: str
) -> None:
    text = runs.header() + body
    spec = write_spec(tmp_path, text)
    offset = text.index(culprit)
    line, column = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.USAGE_ERROR
    message = _one_error_line(result.err)
    assert message.startswith(f"sparsecheck: error: {shown(spec)}:{line}:{column}: ")
    assert words in message
    assert result.out == ""


def test_an_unset_environment_variable_is_exit_4(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARSECHECK_TEST_UNSET", raising=False)
    spec = write_spec(
        tmp_path,
        f"version: 1\ncheckpoints:\n  base: '{runs.base}'\n  rl_a: '${{env:SPARSECHECK_TEST_UNSET}}/rl_a'\n"
        f"checks:\n{_GOOD_CHECK}",
    )
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.USAGE_ERROR
    assert f"{shown(spec)}:4:" in _one_error_line(result.err)
    assert "SPARSECHECK_TEST_UNSET" in result.err

    monkeypatch.setenv("SPARSECHECK_TEST_UNSET", str(runs.root))
    assert run_cli(capsys, "run", spec).code == ExitCode.OK


def _broken_checkpoints(root: Path) -> dict[str, tuple[Path, str]]:
    """Broken checkpoint folders → (the file the message must name, words it must hold)."""
    state = tiny_llama_state_dict(layers=1, dtype=torch.float32)
    cases: dict[str, tuple[Path, str]] = {}
    folder = write_checkpoint(root / "truncated", state)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (folder / "model.safetensors", "truncated")
    folder = write_checkpoint(root / "lost-shard", state, "sharded")
    (folder / "model-00002-of-00002.safetensors").unlink()
    cases["lost-shard"] = (folder / "model.safetensors.index.json", "model-00002-of-00002.safetensors")
    for name, payload, words in [
        ("list-pickle", {"w": [1, 2]}, "'w' holds a list"),
        ("object-pickle", {"w": datetime.date(2020, 1, 1)}, "weights_only"),
    ]:
        (root / name).mkdir()
        torch.save(payload, root / name / "pytorch_model.bin")
        cases[name] = (root / name / "pytorch_model.bin", words)
    cases["missing"] = (root / "missing", "no such file or folder")
    return cases


def test_broken_checkpoints_are_usage_errors_naming_the_file(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _broken_checkpoints(tmp_path / "broken")
    checkpoints = "".join(f"  {name}: '{tmp_path / 'broken' / name}'\n" for name in cases)
    checks = "".join(check_yaml(f"check-{name}", name, "{gt: 0.5}") for name in cases)
    spec = write_spec(tmp_path, f"{runs.header()}{checkpoints}checks:\n{_GOOD_CHECK}{checks}")
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.USAGE_ERROR
    assert "Traceback" not in result.out + result.err
    assert re.search(r"^a\s+update_sparsity\s+\S+.*PASS", result.out, re.M)  # the good check still ran
    for name, (culprit, words) in cases.items():
        assert re.search(rf"^ERROR check-{name} at {re.escape(str(shown(spec)))}:\d+:\d+$", result.out, re.M)
        message = next(line for line in result.out.splitlines() if f"{culprit}:" in line)
        # The checkpoint's entry in the spec, then the broken file, then what is wrong with it.
        assert re.match(rf"^\s+{re.escape(str(shown(spec)))}:\d+:\d+: .*{re.escape(str(culprit))}:", message)
        assert words in message, (name, message)
    assert "0 passed" not in result.out and f"{len(cases)} errors" in result.out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-p", "sparsecheck_no_such_module"], "-p sparsecheck_no_such_module: cannot import"),
        (["--json", "."], "'--json'"),
        (["--junitxml", "."], "'--junitxml'"),
        (["--md", "."], "'--md'"),
        (["--json", "afile/r.json"], "option --json: cannot create the folder of afile/r.json"),
        (["-k", "a and ("], "-k: bad expression"),
    ],
)
def test_bad_options_are_one_line(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    (tmp_path / "afile").write_text("a file, not a folder\n")
    spec = write_spec(tmp_path, runs.header() + "checks:\n" + _GOOD_CHECK)
    result = run_cli(capsys, "run", *args, spec)
    assert result.code == ExitCode.USAGE_ERROR
    assert words in _one_error_line(result.err)


def test_a_missing_spec_path_is_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "run", tmp_path / "nope.sparsecheck.yaml")
    assert result.code == ExitCode.USAGE_ERROR
    assert f"{tmp_path / 'nope.sparsecheck.yaml'}: no such file or folder" in _one_error_line(result.err)


def test_checkpoint_folders_are_never_written(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(runs.root)
    spec = write_spec(
        tmp_path,
        runs.header()
        + "checks:\n"
        + check_yaml("layers", "rl_a", "{ge: 0.8}", "per: layer")
        + check_yaml("fails", "rl_b", "{gt: 0.7}"),
    )
    out = tmp_path / "reports"
    reports: list[Arg] = ["--json", out / "r.json", "--junitxml", out / "r.xml", "--md", out / "r.md"]
    assert run_cli(capsys, "run", "-vv", *reports, spec).code == ExitCode.CHECKS_FAILED
    rerun: list[Arg] = ["run", "--lf", "--cache-dir", out / "cache", *reports, spec]
    assert run_cli(capsys, *rerun).code == ExitCode.CHECKS_FAILED
    diff: list[Arg] = ["diff", runs.base, runs.tuned["rl_a"], "--per", "module", "--json", out / "d.json"]
    assert run_cli(capsys, *diff).code == ExitCode.OK
    assert snapshot(runs.root) == before
    assert {p.name for p in out.iterdir()} == {"r.json", "r.xml", "r.md", "d.json", "cache"}


def _console(*args: str | os.PathLike[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparsecheck", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_console_shows_no_traceback_for_user_errors(runs: Runs, tmp_path: Path) -> None:
    """A real process: exit status, stderr one line naming the file, no traceback."""
    spec = write_spec(tmp_path, runs.header() + "checks:\n  - id: a\n    metric: update_sparsty\n")
    process = _console("run", spec, cwd=tmp_path)
    assert process.returncode == ExitCode.USAGE_ERROR
    assert "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines() == [
        f"sparsecheck: error: {shown(spec)}:{runs.header().count(chr(10)) + 3}:13: "
        "unknown metric 'update_sparsty' (did you mean 'update_sparsity'?)"
    ]

    broken = tmp_path / "broken"
    folder = write_checkpoint(broken, tiny_llama_state_dict(layers=1))
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:-100])
    process = _console("diff", runs.base, broken, cwd=tmp_path)
    assert process.returncode == ExitCode.USAGE_ERROR
    assert "Traceback" not in process.stdout + process.stderr
    assert process.stdout == ""
    [line] = process.stderr.strip().splitlines()
    assert line.startswith("sparsecheck: error: ")
    assert f"{folder / 'model.safetensors'}: corrupt safetensors file" in line


def test_an_unwritable_cache_folder_is_only_a_warning(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("a file, not a folder\n")
    cache = tmp_path / "afile" / "cache"
    spec = write_spec(
        tmp_path, runs.header() + "checks:\n" + _GOOD_CHECK + check_yaml("fails", "rl_b", "{gt: 0.7}")
    )
    result = run_cli(capsys, "run", "--cache-dir", cache, spec)
    assert result.code == ExitCode.CHECKS_FAILED
    assert "1 passed, 1 failed" in result.out
    warnings = result.err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("sparsecheck: warning: cannot write ") for w in warnings)
    assert all(str(cache) in w for w in warnings)


def test_a_missing_checkpoint_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing was measured (exit 4): no table and no failures block, each distinct error once."""
    spec = write_spec(
        tmp_path,
        """\
        version: 1
        checkpoints: {base: ./missing-base, tuned: ./missing-tuned}
        checks:
          - {id: a, metric: update_sparsity, args: {base: base, tuned: tuned}}
          - {id: b, metric: layernorm_sparsity, args: {base: base, tuned: tuned}}
        """,
    )
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.USAGE_ERROR
    assert result.out == ""
    [line] = result.err.strip().splitlines()
    assert line.startswith("sparsecheck: error: ") and "missing-base" in line
