"""``sparsecheck run``: exit codes, collection, selection, -x, --lf, verbosity, report files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_support import Runs, check_yaml, run_cli, write_spec

from sparsecheck.exitcodes import ExitCode


def _spec(runs: Runs, folder: Path, *checks: str, name: str = "x.sparsecheck.yaml") -> Path:
    return write_spec(folder, runs.header() + "checks:\n" + "".join(checks), name)


def _json_checks(path: Path) -> dict[str, dict[str, object]]:
    return {check["id"]: check for check in json.loads(path.read_text())["checks"]}


@pytest.mark.parametrize(
    ("expect", "extra", "code"),
    [
        ("{gt: 0.5}", "", ExitCode.OK),
        ("{gt: 0.7}", "", ExitCode.CHECKS_FAILED),
        ("{gt: 0.5}", "warn: {gt: 0.7}", ExitCode.OK),
    ],
    ids=["pass", "fail", "warn"],
)
def test_exit_code_follows_the_status(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], expect: str, extra: str, code: ExitCode
) -> None:
    """rl_b's sparsity is 0.6: above 0.5, below 0.7."""
    spec = _spec(runs, tmp_path, check_yaml("b", "rl_b", expect, extra))
    result = run_cli(capsys, "run", spec)
    assert result.code == code, result.out + result.err
    status = {ExitCode.OK: "WARN" if extra else "PASS", ExitCode.CHECKS_FAILED: "FAIL"}[code]
    assert re.search(rf"^b\s+update_sparsity\s+{runs.sparsity['rl_b']:.4g}\s.*{status}", result.out, re.M)


def test_strict_warnings_makes_a_warning_fail(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(runs, tmp_path, check_yaml("b", "rl_b", "{gt: 0.5}", "warn: {gt: 0.7}"))
    assert run_cli(capsys, "run", "--strict-warnings", spec).code == ExitCode.CHECKS_FAILED


def test_a_folder_collects_only_files_named_by_the_rule(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _spec(runs, tmp_path / "specs", check_yaml("top", "rl_a", "{gt: 0.8}"), name="a.sparsecheck.yaml")
    _spec(
        runs, tmp_path / "specs" / "sub", check_yaml("nested", "rl_a", "{gt: 0.8}"), name="b.sparsecheck.yml"
    )
    _spec(runs, tmp_path / "specs", check_yaml("ignored", "rl_a", "{gt: 0.99}"), name="other.yaml")
    (tmp_path / "specs" / "notes.yaml").write_text("just: [some, yaml]\n")
    result = run_cli(capsys, "run", "-v", tmp_path / "specs")
    assert result.code == ExitCode.OK, result.out
    assert re.findall(r"^PASS\s+(\S+)", result.out, re.M) == ["top", "nested"]
    assert "ignored" not in result.out


def test_run_without_paths_collects_the_current_folder(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _spec(runs, tmp_path, check_yaml("here", "rl_a", "{gt: 0.8}"))
    result = run_cli(capsys, "run")
    assert result.code == ExitCode.OK
    assert "1 passed" in result.out


def test_nothing_collected_is_exit_5(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _spec(runs, tmp_path, check_yaml("not-by-the-rule", "rl_a", "{gt: 0.8}"), name="spec.yaml")
    assert run_cli(capsys, "run", tmp_path).code == ExitCode.NO_CHECKS_COLLECTED


def test_all_deselected_by_k_is_exit_5(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(runs, tmp_path, check_yaml("a", "rl_a", "{gt: 0.8}"))
    result = run_cli(capsys, "run", "-k", "nomatch", spec)
    assert result.code == ExitCode.NO_CHECKS_COLLECTED
    assert "1 deselected" in result.out


def _selection_spec(runs: Runs, folder: Path) -> Path:
    return _spec(
        runs,
        folder,
        check_yaml("gate-a", "rl_a", "{gt: 0.8}", "marks: [gate]"),
        check_yaml("slow-b", "rl_b", "{gt: 0.5}", "marks: [slow]"),
        check_yaml("both", "rl_b", "{gt: 0.5}", "marks: [gate, slow]"),
    )


@pytest.mark.parametrize(
    ("option", "expr", "kept"),
    [
        ("-k", "gate", ["gate-a", "both"]),
        ("-k", "slow and not both", ["slow-b"]),
        ("-m", "gate", ["gate-a", "both"]),
        ("-m", "gate and not slow", ["gate-a"]),
    ],
)
def test_k_and_m_select_checks(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, expr: str, kept: list[str]
) -> None:
    spec = _selection_spec(runs, tmp_path)
    report = tmp_path / "r.json"
    result = run_cli(capsys, "run", option, expr, "--json", report, spec)
    assert result.code == ExitCode.OK
    assert list(_json_checks(report)) == kept
    assert f"{3 - len(kept)} deselected" in result.out


def test_exitfirst_stops_before_reading_other_checkpoints(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(
        runs,
        tmp_path,
        check_yaml("b-fails", "rl_b", "{gt: 0.7}"),
        check_yaml("b-passes", "rl_b", "{gt: 0.5}"),
        check_yaml("a-later", "rl_a", "{gt: 0.8}"),
    )
    report = tmp_path / "r.json"
    result = run_cli(capsys, "run", "-x", "--json", report, spec)
    assert result.code == ExitCode.CHECKS_FAILED
    statuses = {key: check["status"] for key, check in _json_checks(report).items()}
    assert statuses == {"b-fails": "FAIL"}  # b-passes was computed in the same read, not reported
    assert json.loads(report.read_text())["checkpoints"] and all(
        "rl_a" not in c["path"] for c in json.loads(report.read_text())["checkpoints"]
    )

    assert run_cli(capsys, "run", "--json", report, spec).code == ExitCode.CHECKS_FAILED
    assert list(_json_checks(report)) == ["b-fails", "b-passes", "a-later"]


@pytest.mark.parametrize("cache_option", [False, True], ids=["cwd", "cache-dir"])
def test_last_failed_reruns_only_the_failures(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], cache_option: bool
) -> None:
    cache = tmp_path / "my-cache"
    options = ["--cache-dir", str(cache)] if cache_option else []
    failing = check_yaml("b-fails", "rl_b", "{gt: 0.7}")
    spec = _spec(runs, tmp_path / "s", check_yaml("a-passes", "rl_a", "{gt: 0.8}"), failing)
    report = tmp_path / "r.json"

    assert run_cli(capsys, "run", *options, spec).code == ExitCode.CHECKS_FAILED
    assert (cache if cache_option else tmp_path / ".sparsecheck_cache").is_dir()
    assert not (tmp_path / (".sparsecheck_cache" if cache_option else "my-cache")).exists()

    result = run_cli(capsys, "run", "--lf", *options, "--json", report, spec)
    assert result.code == ExitCode.CHECKS_FAILED
    assert list(_json_checks(report)) == ["b-fails"]
    assert "1 deselected" in result.out

    _spec(runs, tmp_path / "s", check_yaml("a-passes", "rl_a", "{gt: 0.8}"), failing.replace("0.7", "0.5"))
    assert run_cli(capsys, "run", "--lf", *options, "--json", report, spec).code == ExitCode.OK
    assert list(_json_checks(report)) == ["b-fails"]
    assert run_cli(capsys, "run", "--lf", *options, "--json", report, spec).code == ExitCode.OK
    assert list(_json_checks(report)) == ["a-passes", "b-fails"]  # nothing failed last: all run


def test_quiet_prints_only_failures_and_the_summary(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(
        runs, tmp_path, check_yaml("a-ok", "rl_a", "{gt: 0.8}"), check_yaml("b-bad", "rl_b", "{gt: 0.7}")
    )
    out = run_cli(capsys, "run", "-q", spec).out
    assert "a-ok" not in out
    assert re.search(r"^FAIL b-bad at .*x\.sparsecheck\.yaml:\d+:\d+$", out, re.M)
    assert f"value {runs.sparsity['rl_b']:g} is not > 0.7" in out
    assert "expectation" not in out  # no table header
    assert out.strip().splitlines()[-1].startswith("1 passed, 1 failed in ")


def test_verbose_shows_the_breakdown(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(runs, tmp_path, check_yaml("layers", "rl_a", "{ge: 0.8}", "per: layer"))
    default = run_cli(capsys, "run", spec).out
    verbose = run_cli(capsys, "run", "-v", spec).out
    assert "per layer:" not in default
    assert re.search(r"^PASS\s+layers \(", verbose, re.M)
    assert "layers (update_sparsity) per layer:" in verbose
    assert re.search(r"^model\.layers\.1\s+0\.\d+", verbose, re.M)


def test_parametrize_ids_appear(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(
        runs,
        tmp_path,
        "  - id: each-run-sparse\n"
        "    metric: update_sparsity\n"
        "    parametrize: {run: [rl_a, rl_b]}\n"
        "    args: {base: base, tuned: '${run}'}\n"
        "    expect: {gt: 0.5}\n",
    )
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.OK
    for run in ("rl_a", "rl_b"):
        assert re.search(
            rf"^each-run-sparse\[{run}\]\s+update_sparsity\s+{runs.sparsity[run]:.4g}\s", result.out, re.M
        )


def test_report_files_are_written(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(
        runs, tmp_path, check_yaml("a-ok", "rl_a", "{gt: 0.8}"), check_yaml("b-bad", "rl_b", "{gt: 0.7}")
    )
    out = tmp_path / "out"
    result = run_cli(
        capsys, "run", "--junitxml", out / "r.xml", "--json", out / "r.json", "--md", out / "r.md", spec
    )
    assert result.code == ExitCode.CHECKS_FAILED
    for name in ("r.xml", "r.json", "r.md"):
        assert f"written to {out / name}" in result.out

    document = json.loads((out / "r.json").read_text())
    assert document["exitstatus"] == ExitCode.CHECKS_FAILED
    assert document["summary"]["passed"] == 1 and document["summary"]["failed"] == 1
    checks = {check["id"]: check for check in document["checks"]}
    assert checks["a-ok"]["value"] == pytest.approx(runs.sparsity["rl_a"], abs=1e-12)
    assert checks["b-bad"]["status"] == "FAIL"
    assert {Path(c["path"]) for c in document["checkpoints"]} == {
        runs.base.resolve(),
        runs.tuned["rl_a"].resolve(),
        runs.tuned["rl_b"].resolve(),
    }

    suite = ET.parse(out / "r.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["a-ok"].find("failure") is None
    failure = cases["b-bad"].find("failure")
    assert failure is not None and "value > 0.7" in (failure.text or "")

    markdown = (out / "r.md").read_text()
    assert markdown.startswith("## ")
    assert re.search(r"^\| a-ok\s+\|", markdown, re.M) and re.search(r"^\| b-bad\s+\|", markdown, re.M)


INTERRUPTING_PLUGIN = """\
from sparsecheck import Metric, Param, Reducer, hookimpl


class _Interrupted(Reducer):
    def update(self, group):
        raise KeyboardInterrupt

    def finish(self, skipped):
        raise AssertionError("never reached")


class Interrupting(Metric):
    name = "interrupting"
    summary = "Ctrl-C while reading"
    params = (Param("of", "checkpoint", "the checkpoint"),)
    value_field = "value"

    def reducer(self, args):
        return _Interrupted()


@hookimpl
def sparsecheck_add_metrics():
    return [Interrupting()]
"""


def test_an_interrupted_run_is_exit_2_and_still_reports(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sparsecheck_plugin.py").write_text(INTERRUPTING_PLUGIN)
    spec = _spec(runs, tmp_path, "  - {id: ctrl-c, metric: interrupting, args: {of: rl_a}}\n")
    report = tmp_path / "r.json"
    result = run_cli(capsys, "run", "--json", report, spec)
    assert result.code == ExitCode.INTERRUPTED
    assert result.err.strip() == "sparsecheck: interrupted"
    assert json.loads(report.read_text())["exitstatus"] == ExitCode.INTERRUPTED
