"""CI outputs: GitHub annotations (exact format and escaping), the Markdown summary appended to
``$GITHUB_STEP_SUMMARY`` (or with ``--md-append``) instead of replacing it, reports on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import Runs, run_cli, write_spec

from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.errors import Location
from sparsecheck.exitcodes import ExitCode
from sparsecheck.reports.annotations import annotation, escape_data, escape_property
from sparsecheck.spec._model import Check

SPEC = """\
version: 1
checkpoints: {{base: "{base}", tuned: "{tuned}"}}
checks:
  - id: sparse
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    expect: {{gt: 0.99}}
  - id: loose
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    expect: {{gt: 0.1}}
    warn: {{gt: 0.95}}
  - id: fine
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
"""


def _spec(runs: Runs, tmp_path: Path) -> Path:
    return write_spec(tmp_path, SPEC.format(base=runs.base, tuned=runs.tuned["rl_a"]))


def test_github_annotations_exact_format(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(runs, tmp_path)
    result = run_cli(capsys, "run", spec, "--annotations", "github")
    assert result.code == ExitCode.CHECKS_FAILED
    commands = [line for line in result.out.splitlines() if line.startswith("::")]
    value = f"{runs.sparsity['rl_a']:.6g}"
    assert commands == [
        f"::error file=x.sparsecheck.yaml,line=4,title=sparse::value {value} is not > 0.99 "
        "(x.sparsecheck.yaml:7)",
        f"::warning file=x.sparsecheck.yaml,line=8,title=loose::value {value} is not > 0.95 "
        "(x.sparsecheck.yaml:12)",
    ]


def test_annotations_are_on_by_default_in_github_actions_only(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(runs, tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert "::error" not in run_cli(capsys, "run", spec).out
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert "::error file=" in run_cli(capsys, "run", spec).out
    assert "::error" not in run_cli(capsys, "run", spec, "--annotations", "none").out


def test_escaping_follows_githubs_rules() -> None:
    assert escape_data("100%\r\nnext: a, b") == "100%25%0D%0Anext: a, b"
    assert escape_property("dir,1/a:b%\n") == "dir%2C1/a%3Ab%25%0A"


def test_an_error_with_a_multiline_message_is_one_line() -> None:
    spec = Path("specs/a:b.sparsecheck.yaml")
    check = Check("a,b", "update_sparsity", {}, Location(str(spec), 3, 5), spec, {})
    outcome = CheckOutcome(check, Status.ERROR, message="broken: 50%\nsecond line")
    line = annotation(outcome)
    assert line is not None and "\n" not in line
    assert line == "::error file=specs/a%3Ab.sparsecheck.yaml,line=3,title=a%2Cb::broken: 50%25%0Asecond line"
    assert annotation(CheckOutcome(check, Status.PASS)) is None


def test_the_step_summary_is_appended_to_other_files_replaced(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(runs, tmp_path)
    summary = tmp_path / "summary.md"
    summary.write_text("## an earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run_cli(capsys, "run", spec, "--md", "summary.md")
    assert "Markdown report appended to summary.md" in result.out
    text = summary.read_text()
    assert text.startswith("## an earlier step\n\n## ❌ sparsecheck: 1 passed, 1 failed, 1 warned")

    other = tmp_path / "other.md"
    other.write_text("old\n")
    run_cli(capsys, "run", spec, "--md", "other.md")
    assert other.read_text().startswith("## ❌ sparsecheck")
    run_cli(capsys, "run", spec, "--md", "other.md", "--md-append")
    assert other.read_text().count("## ❌ sparsecheck") == 2


@pytest.mark.parametrize("flag", ["--json", "--md"])
def test_a_report_on_stdout_moves_the_terminal_output_to_stderr(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    spec = _spec(runs, tmp_path)
    result = run_cli(capsys, "run", spec, flag, "-", "--annotations", "github")
    assert result.code == ExitCode.CHECKS_FAILED
    if flag == "--json":
        assert [c["id"] for c in json.loads(result.out)["checks"]] == ["sparse", "loose", "fine"]
    else:
        assert result.out.startswith("## ❌ sparsecheck") and "| sparse " in result.out
    assert "1 passed, 1 failed, 1 warned" in result.err
    assert "::error file=x.sparsecheck.yaml" in result.err
    assert not list(tmp_path.glob("-"))


def test_only_one_report_may_take_stdout(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "run", _spec(runs, tmp_path), "--json", "-", "--md", "-")
    assert result.code == ExitCode.USAGE_ERROR
    assert result.err.strip() in {
        f"sparsecheck: error: option {a}: {b} already writes to stdout (-)"
        for a, b in [("--md", "--json"), ("--json", "--md")]
    }
