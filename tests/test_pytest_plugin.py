"""pytest collects ``*.sparsecheck.yaml`` files: one item per check, readable ids, failures that
show the expectation, the value and the spec's file:line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck.engine._prefetch import CAN_FORK
from sparsecheck.pytest_plugin import workers_option
from sparsecheck.reports._table import format_value
from sparsecheck.testing import PlantedPair, planted_pair

pytest_plugins = ["pytester"]

SPEC = """\
version: 1
checkpoints:
  base: '{base}'
  rl_a: '{rl_a}'
  rl_b: '{rl_b}'
checks:
  - id: each-run-sparse
    metric: update_sparsity
    parametrize: {{run: [rl_a, rl_b]}}
    args: {{base: base, tuned: "${{run}}"}}
    expect: {{gt: 0.7}}
    marks: [gate]
  - id: later
    metric: update_sparsity
    args: {{base: base, tuned: rl_a}}
    skip: not before the next run
  - id: loose
    metric: update_sparsity
    args: {{base: base, tuned: rl_b}}
    expect: {{gt: 0.5}}
    warn: {{gt: 0.7}}
"""
#: Lines in SPEC: ``each-run-sparse``, its ``expect``, and ``loose``.
CHECK_LINE = 7
EXPECT_LINE = 11
LOOSE_LINE = 17


@pytest.fixture
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PlantedPair]:
    """Two tuned checkpoints of one base (same seed): 10% and 40% of the entries changed."""
    root = tmp_path_factory.mktemp("pairs")
    return {"rl_a": planted_pair(root / "a", fraction=0.1), "rl_b": planted_pair(root / "b", fraction=0.4)}


@pytest.fixture
def spec(pytester: pytest.Pytester, pairs: dict[str, PlantedPair], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    text = SPEC.format(base=pairs["rl_a"].base, rl_a=pairs["rl_a"].tuned, rl_b=pairs["rl_b"].tuned)
    path = pytester.path / "x.sparsecheck.yaml"
    path.write_text(text)
    (pytester.path / "notes.yaml").write_text("not: [a, spec]\n")
    return path


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "sparsecheck", "-p", "no:cacheprovider", "--strict-markers", *args)


def test_each_check_is_an_item_with_a_readable_id(pytester: pytest.Pytester, spec: Path) -> None:
    result = _run(pytester, "--collect-only", "-q")
    items = [line for line in result.outlines if "::" in line]
    assert items == [
        "x.sparsecheck.yaml::each-run-sparse[rl_a]",
        "x.sparsecheck.yaml::each-run-sparse[rl_b]",
        "x.sparsecheck.yaml::later",
        "x.sparsecheck.yaml::loose",
    ]


def test_outcomes_and_the_failure_report(
    pytester: pytest.Pytester, spec: Path, pairs: dict[str, PlantedPair]
) -> None:
    result = _run(pytester, "-rA")
    result.assert_outcomes(passed=2, failed=1, skipped=1, warnings=1)
    truth = pairs["rl_b"].sparsity
    result.stdout.re_match_lines(
        [
            r"_+ update_sparsity: each-run-sparse\[rl_b\] _+",
            rf"FAIL: value {truth:g} is not > 0\.7 \(.*x\.sparsecheck\.yaml:{EXPECT_LINE}\)",
            r"  expected: value > 0\.7",
            rf"  value:    {re.escape(format_value(truth))}",
            rf"  spec:     (?:.*/)?{re.escape(spec.name)}:{CHECK_LINE}:\d+",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"*x.sparsecheck.yaml:{LOOSE_LINE}: UserWarning: loose: value * is not > 0.7*",
            "PASSED x.sparsecheck.yaml::each-run-sparse[[]rl_a[]]",
            "SKIPPED [[]1[]] x.sparsecheck.yaml: not before the next run",
        ]
    )


def test_k_and_m_select_items(pytester: pytest.Pytester, spec: Path) -> None:
    _run(pytester, "-k", "rl_a").assert_outcomes(passed=1, deselected=3)
    _run(pytester, "-m", "gate").assert_outcomes(passed=1, failed=1, deselected=2)


def test_a_bad_spec_is_a_collection_error_naming_file_and_line(pytester: pytest.Pytester, spec: Path) -> None:
    bad = pytester.path / "bad.sparsecheck.yaml"
    bad.write_text(
        textwrap.dedent(
            """\
            version: 1
            checkpoints: {base: a, tuned: b}
            checks:
              - id: a
                metric: update_sparsity
                args: {base: base, tuned: tuned, policy: fuzzy}
            """
        )
    )
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{bad.name}:6:*: args.policy*fuzzy*"])
    assert "Traceback" not in result.stdout.str()


def test_a_spec_folders_local_plugin_is_loaded(pytester: pytest.Pytester, spec: Path) -> None:
    suite = pytester.mkdir("suite")
    (suite / "sparsecheck_plugin.py").write_text(
        textwrap.dedent(
            """\
            from sparsecheck import Metric, MetricResult, Reducer, hookimpl


            class _Nothing(Reducer):
                def update(self, group):
                    raise AssertionError("reads no tensor")

                def finish(self, skipped):
                    return MetricResult("answer", "value", {"value": 42.0}, "the answer")


            class Answer(Metric):
                name = "answer"
                summary = "always 42"
                value_field = "value"
                reads_tensors = False

                def reducer(self, args):
                    return _Nothing()


            @hookimpl
            def sparsecheck_add_metrics():
                return [Answer()]
            """
        )
    )
    (suite / "y.sparsecheck.yaml").write_text(
        "version: 1\nchecks:\n  - {id: small, metric: answer, expect: {lt: 42}}\n"
        "  - {id: exact, metric: answer, expect: {eq: 42}}\n"
    )
    result = _run(pytester, "suite")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAIL: value 42 is not < 42*"])


WHERE_PLUGIN = """\
import os
from sparsecheck import Metric, MetricResult, Param, Reducer, hookimpl

MAIN = os.getpid()


class _Where(Reducer):
    def __init__(self, tuned):
        self.tuned, self.pids = tuned, set()

    def _pid(self, group):
        return group.memo(("where", self.tuned), os.getpid)

    def prepare(self, group):
        self._pid(group)

    def update(self, group):
        self.pids.add(self._pid(group))

    def finish(self, skipped):
        return MetricResult("where", "in_workers", {"in_workers": len(self.pids - {MAIN})}, "pids")


class Where(Metric):
    name = "where"
    summary = "how many worker processes prepared tensors"
    params = (Param("tuned", "checkpoint", "read"),)
    value_field = "in_workers"

    def reducer(self, args):
        return _Where(args["tuned"])


@hookimpl
def sparsecheck_add_metrics():
    return [Where()]
"""


@pytest.mark.skipif(not CAN_FORK, reason="worker processes need fork (Linux)")
@pytest.mark.parametrize(
    ("option", "passes"), [("--sparsecheck-workers=2", True), ("--sparsecheck-workers=1", False)]
)
def test_sparsecheck_workers_option_reaches_the_read_pass(
    pytester: pytest.Pytester,
    pairs: dict[str, PlantedPair],
    monkeypatch: pytest.MonkeyPatch,
    option: str,
    passes: bool,
) -> None:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    suite = pytester.mkdir("suite")
    (suite / "sparsecheck_plugin.py").write_text(WHERE_PLUGIN)
    (suite / "w.sparsecheck.yaml").write_text(
        f"version: 1\ncheckpoints: {{tuned: '{pairs['rl_a'].tuned}'}}\n"
        "checks:\n  - {id: where, metric: where, args: {tuned: tuned}, expect: {ge: 1}}\n"
    )
    result = _run(pytester, option, str(suite))
    result.assert_outcomes(passed=1 if passes else 0, failed=0 if passes else 1)


def test_workers_default_to_one_under_xdist_and_must_be_positive(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pytester.parseconfig("-p", "sparsecheck")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert workers_option(config) is None
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert workers_option(config) == 1
    assert workers_option(pytester.parseconfig("-p", "sparsecheck", "--sparsecheck-workers", "3")) == 3
    with pytest.raises(pytest.UsageError, match="at least 1, got 0"):
        workers_option(pytester.parseconfig("-p", "sparsecheck", "--sparsecheck-workers", "0"))
