"""End to end: expectations that compare with another check's result (``{check: ID}``), over
planted checkpoints; selection (-k, --lf), -x batches, errors of the referenced check, the
JSON report and the pytest plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.testing import PlantedPair, planted_pair, run_spec

pytest_plugins = ["pytester"]

SPEC = """\
version: 1
checkpoints: {{base: "{base}", sft: "{sft}", rl: "{rl}"}}
checks:
  - id: sft-sparsity
    metric: update_sparsity
    args: {{base: base, tuned: sft}}
  - id: rl-sparsity
    metric: update_sparsity
    args: {{base: base, tuned: rl}}
  - id: rl-sparser-than-sft
    metric: update_sparsity
    args: {{base: base, tuned: rl}}
    expect: {{gt: {{check: sft-sparsity}}}}
  - id: sft-sparser-than-rl
    metric: update_sparsity
    args: {{base: base, tuned: sft}}
    expect: {{gt: {{check: rl-sparsity}}}}
  - id: rl-within-margin
    metric: update_sparsity
    args: {{base: base, tuned: rl}}
    expect: {{ge: {{check: rl-sparser-than-sft, minus: 0.01}}}}
"""
#: The line of ``sft-sparser-than-rl``'s expectation in SPEC.
REVERSED_EXPECT_LINE = 17


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PlantedPair]:
    """One base (same seed): a dense "sft" update (60% changed) and a sparse "rl" one (10%)."""
    root = tmp_path_factory.mktemp("pairs")
    return {"sft": planted_pair(root / "sft", fraction=0.6), "rl": planted_pair(root / "rl", fraction=0.1)}


def write_spec(folder: Path, pairs: dict[str, PlantedPair], text: str = SPEC) -> Path:
    path = folder / "refs.sparsecheck.yaml"
    path.write_text(text.format(base=pairs["sft"].base, sft=pairs["sft"].tuned, rl=pairs["rl"].tuned))
    return path


def by_id(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    return {outcome.check.id: outcome for outcome in outcomes}


def test_rl_sparser_than_sft_passes_and_the_reverse_fails(
    tmp_path: Path, pairs: dict[str, PlantedPair]
) -> None:
    spec = write_spec(tmp_path, pairs)
    report = tmp_path / "report.json"
    outcomes = by_id(run_spec(spec, options={"json_path": report}).outcomes)
    sft, rl = pairs["sft"].sparsity, pairs["rl"].sparsity
    assert sft < rl
    assert outcomes["sft-sparsity"].value == pytest.approx(sft)
    assert outcomes["rl-sparsity"].value == pytest.approx(rl)
    assert outcomes["rl-sparser-than-sft"].status is Status.PASS
    assert outcomes["rl-within-margin"].status is Status.PASS
    reversed_ = outcomes["sft-sparser-than-rl"]
    assert reversed_.status is Status.FAIL
    assert reversed_.message == (
        f"value {reversed_.value:.6g} is not > rl-sparsity.value ({outcomes['rl-sparsity'].value:.6g}) "
        f"({spec}:{REVERSED_EXPECT_LINE})"
    )
    checks = {entry["id"]: entry for entry in json.loads(report.read_text())["checks"]}
    assert checks["rl-sparser-than-sft"]["expectation"] == "value > sft-sparsity.value"
    assert checks["rl-within-margin"]["expectation"] == "value >= rl-sparser-than-sft.value - 0.01"
    assert checks["sft-sparser-than-rl"]["message"] == reversed_.message


def test_k_computes_deselected_references_without_reporting_them(
    tmp_path: Path, pairs: dict[str, PlantedPair]
) -> None:
    spec = write_spec(tmp_path, pairs)
    session = run_spec(spec, options={"keyword": "than"})
    outcomes = by_id(session.outcomes)
    assert list(outcomes) == ["rl-sparser-than-sft", "sft-sparser-than-rl"]
    assert outcomes["rl-sparser-than-sft"].status is Status.PASS
    assert outcomes["sft-sparser-than-rl"].status is Status.FAIL
    assert f"rl-sparsity.value ({pairs['rl'].sparsity:.6g})" in outcomes["sft-sparser-than-rl"].message
    assert [check.id for check in session.config.deselected] == [
        "sft-sparsity",
        "rl-sparsity",
        "rl-within-margin",
    ]


def test_last_failed_reruns_the_failure_against_its_reference(
    tmp_path: Path, pairs: dict[str, PlantedPair]
) -> None:
    spec = write_spec(tmp_path, pairs)
    run_spec(spec)
    outcomes = run_spec(spec, options={"last_failed": True}).outcomes
    assert [(o.check.id, o.status) for o in outcomes] == [("sft-sparser-than-rl", Status.FAIL)]
    assert f"rl-sparsity.value ({pairs['rl'].sparsity:.6g})" in outcomes[0].message


EXITFIRST = """\
version: 1
checkpoints: {{base: "{base}", sft: "{sft}", rl: "{rl}"}}
checks:
  - {{id: a, metric: update_sparsity, args: {{base: base, tuned: rl}}, expect: {{gt: {{check: b}}}}}}
  - {{id: b, metric: update_sparsity, args: {{base: base, tuned: sft}}}}
  - {{id: c, metric: update_sparsity, args: {{base: base, tuned: sft}}, expect: {{gt: 0.99}}}}
  - {{id: d, metric: update_sparsity, args: {{base: base, tuned: base}}}}
"""


def test_exitfirst_batches_a_check_with_the_checks_it_references(
    tmp_path: Path, pairs: dict[str, PlantedPair]
) -> None:
    """``a`` reads other checkpoints than ``b``, which it references and which comes later:
    they share a batch, which fails at ``c``, so ``d``'s checkpoints are not read."""
    spec = write_spec(tmp_path, pairs, EXITFIRST)
    session = run_spec(spec, options={"exitfirst": True, "no_cache": True})
    statuses = {outcome.check.id: outcome.status for outcome in session.outcomes}
    assert statuses == {"a": Status.PASS, "b": Status.PASS, "c": Status.FAIL}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("tuned: sft}}\n", "tuned: sft}}\n    skip: later\n"), "has no result (skipped or not run)"),
        (('sft: "{sft}"', 'sft: "{sft}/missing"'), "errored: "),
    ],
    ids=["skipped", "errored"],
)
def test_a_reference_to_a_skipped_or_errored_check_is_an_error(
    tmp_path: Path, pairs: dict[str, PlantedPair], change: tuple[str, str], message: str
) -> None:
    spec = write_spec(tmp_path, pairs, SPEC.replace(*change))
    outcome = by_id(run_spec(spec).outcomes)["rl-sparser-than-sft"]
    assert outcome.status is Status.ERROR
    assert outcome.message.startswith(f"referenced check 'sft-sparsity' {message}")


def test_pytest_items_judge_references_even_when_deselected(
    pytester: pytest.Pytester, pairs: dict[str, PlantedPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    write_spec(pytester.path, pairs)
    result = pytester.runpytest("-p", "sparsecheck", "-p", "no:cacheprovider", "-k", "than", "-rA")
    result.assert_outcomes(passed=1, failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            f"FAIL: value * is not > rl-sparsity.value ({pairs['rl'].sparsity:.6g}) "
            f"(*refs.sparsecheck.yaml:{REVERSED_EXPECT_LINE})",
            "  expected: value > rl-sparsity.value",
            "PASSED refs.sparsecheck.yaml::rl-sparser-than-sft",
        ]
    )
