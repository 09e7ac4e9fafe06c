"""Defaults from ``[tool.sparsecheck]`` in pyproject.toml and ``SPARSECHECK_*`` variables:
command line > environment > file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cli_support import Runs, run_cli, write_spec

from sparsecheck.exitcodes import ExitCode

SPEC = """\
version: 1
checkpoints: {{base: "{base}", tuned: "{tuned}"}}
checks:
  - id: loose
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    expect: {{gt: 0.1}}
    warn: {{gt: 0.99}}
"""


@pytest.fixture
def project(runs: Runs, tmp_path: Path) -> Path:
    write_spec(tmp_path / "specs", SPEC.format(base=runs.base, tuned=runs.tuned["rl_a"]))
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "my-model"

            [tool.sparsecheck]
            paths = ["specs"]
            json = "reports/from-file.json"
            cache-dir = ".sc-cache"
            strict_warnings = true
            """
        )
    )
    return tmp_path


def test_file_defaults_apply_with_paths_relative_to_the_file(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    result = run_cli(capsys, "run")
    assert result.code == ExitCode.CHECKS_FAILED, result.out + result.err  # strict-warnings from the file
    (check,) = json.loads((project / "reports" / "from-file.json").read_text())["checks"]
    assert check["status"] == "WARN"
    assert (project / ".sc-cache").is_dir()
    assert not (project / "sub" / ".sparsecheck_cache").exists()


def test_environment_beats_file_and_command_line_beats_both(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARSECHECK_JSON", "from-env.json")
    monkeypatch.setenv("SPARSECHECK_STRICT_WARNINGS", "false")
    assert run_cli(capsys, "run").code == ExitCode.OK
    assert (project / "from-env.json").exists() and not (project / "reports").exists()
    assert (
        run_cli(capsys, "run", "--json", "from-cli.json", "--strict-warnings").code == ExitCode.CHECKS_FAILED
    )
    assert (project / "from-cli.json").exists()


def test_an_unknown_key_names_the_file_and_the_key(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "pyproject.toml"
    path.write_text(path.read_text() + "worker = 2\n")
    result = run_cli(capsys, "run")
    assert result.code == ExitCode.USAGE_ERROR
    assert result.err.strip() == (
        f"sparsecheck: error: {path}: [tool.sparsecheck] worker: unknown key (did you mean 'workers'?)"
    )
    assert run_cli(capsys, "metrics").code == ExitCode.OK  # other commands do not read it


def test_a_list_for_a_single_option_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "pyproject.toml"
    path.write_text(path.read_text().replace('json = "reports/from-file.json"', 'json = ["a", "b"]'))
    result = run_cli(capsys, "run")
    assert result.code == ExitCode.USAGE_ERROR
    assert "[tool.sparsecheck] json: expected one value, got a list" in result.err
