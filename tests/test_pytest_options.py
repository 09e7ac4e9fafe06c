"""The ``sparsecheck run`` options under pytest: baselines, ``--sparsecheck-var``,
``--sparsecheck-strict-warnings``, the cache folder and the file reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck.reports._table import format_value
from sparsecheck.testing import PlantedPair, planted_pair

pytest_plugins = ["pytester"]

#: A regression suite over the candidate checkpoint ``${candidate}``.
SUITE = """\
version: 1
checkpoints: {{base: '{base}', tuned: '${{candidate}}'}}
checks:
  - id: sparsity-kept
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    expect: {{ge: {{baseline: true, minus: 0.02}}}}
  - id: layers-kept
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    per: layer
    expect: {{ge: {{baseline: sparsity, minus: 0.02}}}}
  - id: loose
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    expect: {{gt: 0.1}}
    warn: {{gt: 0.8}}
"""


@pytest.fixture
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PlantedPair]:
    """The accepted checkpoint (10% changed) and a regressed one (40%), of one base."""
    root = tmp_path_factory.mktemp("pairs")
    return {
        "accepted": planted_pair(root / "a", fraction=0.1),
        "regressed": planted_pair(root / "b", fraction=0.4),
    }


@pytest.fixture
def suite(pytester: pytest.Pytester, pairs: dict[str, PlantedPair], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    path = pytester.path / "gate.sparsecheck.yaml"
    path.write_text(SUITE.format(base=pairs["accepted"].base))
    return path


def _run(pytester: pytest.Pytester, candidate: PlantedPair, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "sparsecheck", "-p", "no:cacheprovider", f"--sparsecheck-var=candidate={candidate.tuned}", *args
    )


def test_a_regression_suite_fails_on_the_regressed_checkpoint_and_passes_on_the_accepted_one(
    pytester: pytest.Pytester, suite: Path, pairs: dict[str, PlantedPair]
) -> None:
    first = _run(
        pytester,
        pairs["accepted"],
        "--sparsecheck-save-baseline=b.json",
        "--sparsecheck-baseline-missing=skip",
    )
    first.assert_outcomes(passed=1, skipped=2)
    first.stdout.fnmatch_lines(["Baseline written to b.json"])
    saved = json.loads((pytester.path / "b.json").read_text())
    assert set(saved["checks"]) == {
        f"gate.sparsecheck.yaml::{i}" for i in ("sparsity-kept", "layers-kept", "loose")
    }

    _run(pytester, pairs["accepted"], "--sparsecheck-baseline=b.json").assert_outcomes(passed=3)
    regressed = _run(
        pytester, pairs["regressed"], "--sparsecheck-baseline=b.json", "--sparsecheck-json=r.json"
    )
    regressed.assert_outcomes(passed=1, failed=2)
    regressed.stdout.fnmatch_lines(
        [
            "FAIL: value * is not >= baseline.value - 0.02 (*)*",
            "  expected: value >= baseline.value - 0.02",
            f"  value:    {format_value(pairs['regressed'].sparsity)}",
            f"  baseline: {pairs['accepted'].sparsity} (change -0.*)",
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    kept = next(c for c in report["checks"] if c["id"] == "sparsity-kept")
    assert kept["baseline"] == pytest.approx(pairs["accepted"].sparsity)
    assert kept["delta"] == pytest.approx(pairs["regressed"].sparsity - pairs["accepted"].sparsity)


def test_a_baseline_operand_without_baseline_errors(
    pytester: pytest.Pytester, suite: Path, pairs: dict[str, PlantedPair]
) -> None:
    result = _run(pytester, pairs["accepted"], "-k", "sparsity")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["ERROR: *no --baseline FILE was given*"])


def test_strict_warnings_fail_the_warned_check(
    pytester: pytest.Pytester, suite: Path, pairs: dict[str, PlantedPair]
) -> None:
    _run(pytester, pairs["regressed"], "-k", "loose").assert_outcomes(passed=1, warnings=1)
    strict = _run(pytester, pairs["regressed"], "-k", "loose", "--sparsecheck-strict-warnings")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["WARN: value * is not > 0.8*"])


def test_file_reports_and_cache_folder(
    pytester: pytest.Pytester, suite: Path, pairs: dict[str, PlantedPair]
) -> None:
    args = [
        "-k",
        "loose",
        "--sparsecheck-cache-dir=cache",
        "--sparsecheck-md=r.md",
        "--sparsecheck-html=r.html",
    ]
    result = _run(
        pytester, pairs["accepted"], *args, "--sparsecheck-history=h.jsonl", "--sparsecheck-label=one"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["Markdown report written to r.md", "HTML report written to r.html"])
    assert "| loose " in (pytester.path / "r.md").read_text()
    assert "<html" in (pytester.path / "r.html").read_text()
    assert any((pytester.path / "cache").rglob("*")), "the result cache is in --sparsecheck-cache-dir"
    assert not (pytester.path / ".sparsecheck_cache").exists()
    (line,) = (pytester.path / "h.jsonl").read_text().splitlines()
    assert json.loads(line)["label"] == "one"


def test_a_bad_var_is_a_usage_error(
    pytester: pytest.Pytester, suite: Path, pairs: dict[str, PlantedPair]
) -> None:
    result = _run(pytester, pairs["accepted"], "--sparsecheck-var=not a pair")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*option --sparsecheck-var: expected NAME=VALUE, got 'not a pair'*"])
