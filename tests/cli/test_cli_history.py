"""``--history FILE`` appends a JSON line per run; ``sparsecheck history FILE`` prints the table;
the HTML report draws each check's value across the runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_support import Runs, run_cli, write_spec

from sparsecheck.exitcodes import ExitCode

SPEC = """\
version: 1
checkpoints: {{base: "{base}", tuned: "${{candidate}}"}}
checks:
  - {{id: sparse, metric: update_sparsity, args: {{base: base, tuned: tuned}}, expect: {{gt: 0.7}}}}
"""


def _three_runs(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, Path]]:
    spec = write_spec(tmp_path, SPEC.format(base=runs.base))
    order = [
        ("step-100", runs.tuned["rl_a"]),
        ("step-200", runs.tuned["rl_b"]),
        ("step-300", runs.tuned["rl_a"]),
    ]
    for label, candidate in order:
        args = ["run", spec, "--var", f"candidate={candidate}", "--history", "h.jsonl", "--label", label]
        run_cli(capsys, *args, "--html", f"{label}.html")
    return order


def test_each_run_appends_one_line(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _three_runs(runs, tmp_path, capsys)
    lines = [json.loads(line) for line in Path("h.jsonl").read_text().splitlines()]
    assert [line["label"] for line in lines] == ["step-100", "step-200", "step-300"]
    assert [line["exitstatus"] for line in lines] == [0, 1, 0]
    values = [line["checks"]["x.sparsecheck.yaml::sparse"]["value"] for line in lines]
    assert values == pytest.approx([runs.sparsity["rl_a"], runs.sparsity["rl_b"], runs.sparsity["rl_a"]])
    assert [c["source"] for c in lines[1]["checkpoints"]] == [str(runs.base), str(runs.tuned["rl_b"])]
    assert all(c["fingerprint"] for line in lines for c in line["checkpoints"])


def test_history_command_prints_one_column_per_run(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _three_runs(runs, tmp_path, capsys)
    result = run_cli(capsys, "history", "h.jsonl")
    assert result.code == ExitCode.OK, result.err
    header, _, row = result.out.splitlines()
    assert header.split() == ["check", "step-100", "step-200", "step-300"]
    a, b = f"{runs.sparsity['rl_a']:.4g}", f"{runs.sparsity['rl_b']:.4g}"
    assert row.split() == ["sparse", a, b, "FAIL", a]
    last = run_cli(capsys, "history", "h.jsonl", "--last", "1")
    assert last.out.splitlines()[0].split() == ["check", "step-300"]


def test_the_html_report_draws_the_history(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _three_runs(runs, tmp_path, capsys)
    first = Path("step-100.html").read_text()
    page = Path("step-300.html").read_text()
    (svg,) = re.findall(r'<svg class="history".*?</svg>', page)
    dots = re.findall(r'<circle class="run" cx="([\d.]+)" cy="([\d.]+)".*?<title>(.*?)</title>', svg)
    assert [title.split(":")[0] for *_, title in dots] == ["step-100", "step-200", "step-300"]
    heights = [float(cy) for _, cy, _ in dots]
    # The regressed run (less sparse) is drawn lower (larger y) than the two equal ones.
    assert heights[0] == heights[2] < heights[1]
    assert "FAIL" in dots[1][2]
    assert '<a href="#history">' in page
    assert len(re.findall(r'<circle class="run"', first)) == 1  # the first run draws itself alone


@pytest.mark.parametrize(
    ("content", "message"), [("{}\n", "h.jsonl:1: not a sparsecheck history line"), ("", "no runs yet")]
)
def test_a_bad_or_empty_history_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    Path("h.jsonl").write_text(content)
    result = run_cli(capsys, "history", "h.jsonl")
    assert result.code in (ExitCode.USAGE_ERROR, ExitCode.NO_CHECKS_COLLECTED)
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_missing_history_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "history", "nope.jsonl")
    assert result.code == ExitCode.USAGE_ERROR
    assert (
        result.err.strip()
        == "sparsecheck: error: nope.jsonl: no such history file (write one with run --history FILE)"
    )
