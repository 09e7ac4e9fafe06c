from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
from report_fixtures import (
    layer_result,
    make_outcome,
    planted_outcomes,
    registered_manager,
    run_reports,
)

from sparsecheck._config import Config, ReadProgress
from sparsecheck.engine._outcome import Status
from sparsecheck.metrics._api import Fields
from sparsecheck.reports import terminal
from sparsecheck.reports.terminal import TerminalReporter, read_note

SUMMARY = "2 passed, 1 failed, 1 warned, 1 error, 1 skipped, 2 deselected in "


def _output(capsys: pytest.CaptureFixture[str], verbosity: int, **options: object) -> list[str]:
    run_reports(planted_outcomes(), {"verbosity": verbosity, **options}, deselected=2)
    captured = capsys.readouterr()
    assert captured.err == ""  # not a terminal: no progress bar
    return captured.out.splitlines()


def test_default_output_table_failures_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _output(capsys, 0)
    text = "\n".join(lines)
    assert "\x1b[" not in text  # no colours when stdout is not a terminal
    assert lines[-1].startswith(SUMMARY)
    header = next(line for line in lines if line.startswith("id "))
    assert header.split() == ["id", "metric", "value", "expectation", "status", "time"]
    row = next(line for line in lines if line.startswith("rl-update-is-sparse "))
    assert row.split() == [
        "rl-update-is-sparse",
        "update_sparsity",
        "0.9413",
        "value",
        ">",
        "0.7",
        "PASS",
        "0.50s",
    ]
    failures = text.split("\nfailures\n", 1)[1].split("\nwarnings\n", 1)[0]
    assert "FAIL every-layer-sparse at specs/demo.sparsecheck.yaml:10:5" in failures
    assert "    3 of 6 layers have sparsity <= 0.6" in failures
    assert "ERROR broken at specs/demo.sparsecheck.yaml:22:5" in failures
    assert "sparse-enough" not in failures
    assert "WARN sparse-enough at specs/demo.sparsecheck.yaml:17:5" in text.split("\nwarnings\n")[1]
    assert "layer0" not in text  # breakdowns only with -v
    assert not any(line.startswith("PASS  ") for line in lines)


def test_quiet_prints_failures_and_summary_only(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _output(capsys, -1)
    text = "\n".join(lines)
    assert lines[-1].startswith(SUMMARY)
    assert "expectation" not in text
    assert "rl-update-is-sparse" not in text
    assert "sparse-enough" not in text  # warnings are left out too
    assert "3 of 6 layers have sparsity <= 0.6" in text


def test_verbose_lines_breakdown_notes_and_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _output(capsys, 1)
    outcomes = planted_outcomes()
    assert lines[: len(outcomes)] == [f"{o.status.value:<5} {o.check.id} (0.50s)" for o in outcomes]
    text = "\n".join(lines)
    breakdown = text.split("rl-update-is-sparse (update_sparsity) per layer:", 1)[1]
    header = breakdown.splitlines()[1].split()
    assert header == ["layer", "sparsity", "density", "changed"]
    groups = layer_result().groups["layer"]
    for key, fields in groups.items():
        row = next(line for line in breakdown.splitlines() if line.startswith(key + " "))
        assert row.split() == [
            key,
            f"{fields['sparsity']:.4g}",
            f"{fields['density']:.4g}",
            f"{fields['changed']:,}",
        ]
    assert "note: compared bfloat16 with float32 in float32" in text
    assert "lm_head.weight: shape (10, 4) vs (12, 4)" in text
    assert lines[-1].startswith(SUMMARY)


def test_group_rows_capped_at_v_and_all_at_vv(capsys: pytest.CaptureFixture[str]) -> None:
    n = terminal.MAX_GROUP_ROWS + 7
    outcome = make_outcome("many", Status.PASS, 0.9, result=layer_result(n))
    run_reports([outcome], {"verbosity": 1})
    out = capsys.readouterr().out
    assert "layer0 " in out and f"layer{n - 8} " in out
    assert f"layer{n - 7} " not in out
    assert "... 7 more groups (-vv shows all)" in out
    run_reports([outcome], {"verbosity": 2})
    out = capsys.readouterr().out
    assert f"layer{n - 1} " in out
    assert "more groups" not in out


def test_field_columns_capped() -> None:
    fields: Fields = {f"f{i}": float(i) for i in range(terminal.MAX_FIELD_COLUMNS + 3)}
    lines = terminal.group_table("tensor", {"w": fields}, "f5")
    assert lines[0].split()[:3] == ["tensor", "f5", "f0"]
    assert len(lines[0].split()) == terminal.MAX_FIELD_COLUMNS + 1
    assert lines[-1].startswith("(3 more fields in the JSON report: ")


def test_report_file_lines_come_before_the_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "r.json"
    lines = _output(capsys, 0, json_path=path)
    assert lines[-2] == f"JSON report written to {path}"
    assert lines[-1].startswith(SUMMARY)


def test_nothing_collected(capsys: pytest.CaptureFixture[str]) -> None:
    run_reports([], deselected=3)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [lines[-1]]
    assert lines[-1].startswith("no checks ran, 3 deselected in ")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(done: int, total: int = 10) -> ReadProgress:
    return ReadProgress(done, total, done * 200_000_000, total * 200_000_000, elapsed=2.0)


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    stderr = _Tty()
    monkeypatch.setattr(sys, "stderr", stderr)
    reporter = TerminalReporter(Config(registered_manager([]), {"verbosity": 0}))

    reporter.sparsecheck_read_progress(_progress(3))
    first = stderr.getvalue()
    assert first.startswith("\rread pass [....................] 0/10")  # drawn when it starts
    assert "\rread pass [######......" in first
    # 3 of 10 tensors in 2 s: 0:04 more; 600 MB in 2 s
    assert "3/10 tensors  0:02 elapsed  ETA 0:04  0.60/2.00 GB  300 MB/s" in first

    clock[0] += 0.02  # within the rate limit: no redraw
    reporter.sparsecheck_read_progress(_progress(4))
    assert stderr.getvalue() == first

    clock[0] += 0.2
    reporter.sparsecheck_read_progress(_progress(5))
    assert "5/10 tensors" in stderr.getvalue()

    reporter.sparsecheck_read_progress(_progress(10))  # done: the line is cleared
    last_line = stderr.getvalue().rsplit("\r", 2)
    assert last_line[-1] == "" and last_line[-2].strip() == ""


def test_off_a_terminal_the_read_pass_prints_a_start_and_an_end_line(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    reporter = TerminalReporter(Config(registered_manager([]), {"verbosity": 0}))
    for done in range(1, 11):
        reporter.sparsecheck_read_progress(_progress(done))
    clock[0] += 1.5
    assert stderr.getvalue().splitlines() == ["read pass ...", "read pass done, 10/10 tensors in 2.0s"]


def test_no_progress_when_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    for stream in (io.StringIO(), _Tty()):
        monkeypatch.setattr(sys, "stderr", stream)
        reporter = TerminalReporter(Config(registered_manager([]), {"verbosity": -1}))
        reporter.sparsecheck_read_progress(_progress(3))
        reporter.sparsecheck_read_progress(_progress(10))
        assert stream.getvalue() == ""


def test_read_note_without_byte_sizes() -> None:
    assert read_note(ReadProgress(5, 10, 0, 0, elapsed=0.0)) == "0.00/0.00 MB  0 MB/s"
    assert read_note(ReadProgress(1, 2, 5_000_000, 20_000_000, 0.5)) == "5.00/20.00 MB  10 MB/s"


def test_statuses_are_coloured_for_click_to_strip_off_terminals() -> None:
    written: list[str] = []
    run_reports(planted_outcomes(), write=written.append)
    row = next(line for line in written if line.startswith("every-layer-sparse "))
    assert "\x1b[31m\x1b[1mFAIL" in row  # red, bold
    assert "\x1b[" in written[-1]  # the summary line too
