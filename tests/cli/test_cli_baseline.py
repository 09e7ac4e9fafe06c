"""``--save-baseline`` then ``--baseline``: ``{baseline: …}`` operands compare a checkpoint with
the accepted one's results, per group under ``per:``; reports show the baseline and the delta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import Runs, run_cli, write_spec

import sparsecheck
from sparsecheck.exitcodes import ExitCode

#: A regression suite: the candidate checkpoint (``--var candidate=…``) against the baseline.
SUITE = """\
version: 1
checkpoints: {{base: "{base}", tuned: "${{candidate}}"}}
checks:
  - id: sparsity-kept
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    expect: {{ge: {{baseline: true, minus: 0.02}}}}
  - id: each-tensor-as-before
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
    per: tensor
    expect: {{eq: {{baseline: sparsity}}, tol: 0.0}}
  - id: measured
    metric: update_sparsity
    args: {{base: base, tuned: tuned}}
"""


def _suite(runs: Runs, tmp_path: Path) -> Path:
    return write_spec(tmp_path, SUITE.format(base=runs.base))


def _run(capsys: pytest.CaptureFixture[str], spec: Path, candidate: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli(capsys, "run", spec, "--var", f"candidate={candidate}", *args)


def test_save_then_compare_passes_on_the_same_checkpoint_and_fails_on_a_regression(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _suite(runs, tmp_path)
    # The gate's first run: nothing to compare with yet, so its baseline checks skip; all saved.
    first = _run(
        capsys, spec, runs.tuned["rl_a"], "--baseline-missing", "skip", "--save-baseline", "baseline.json"
    )
    assert first.code == ExitCode.OK, first.out + first.err
    assert "Baseline written to baseline.json" in first.out
    document = json.loads(Path("baseline.json").read_text())
    ids = ("sparsity-kept", "each-tensor-as-before", "measured")
    assert set(document["checks"]) == {f"x.sparsecheck.yaml::{i}" for i in ids}

    accepted = _run(capsys, spec, runs.tuned["rl_a"], "--baseline", "baseline.json")
    assert accepted.code == ExitCode.OK, accepted.out + accepted.err
    regressed = _run(capsys, spec, runs.tuned["rl_b"], "--baseline", "baseline.json", "--json", "r.json")
    assert regressed.code == ExitCode.CHECKS_FAILED, regressed.out + regressed.err
    checks = {c["id"]: c for c in json.loads(Path("r.json").read_text())["checks"]}
    kept = checks["sparsity-kept"]
    assert kept["status"] == "FAIL"
    assert kept["baseline"] == pytest.approx(runs.sparsity["rl_a"])
    assert kept["delta"] == pytest.approx(runs.sparsity["rl_b"] - runs.sparsity["rl_a"])
    assert "baseline.value - 0.02" in kept["message"]
    # A measurement has no baseline operand but still shows its baseline and delta.
    assert checks["measured"]["status"] == "PASS"
    assert checks["measured"]["delta"] == pytest.approx(runs.sparsity["rl_b"] - runs.sparsity["rl_a"])
    assert f"baseline {runs.sparsity['rl_a']:.4g}" in regressed.out


def test_per_groups_compare_with_their_own_group(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every tensor equals its own baseline group exactly; the tensors' sparsities differ from
    one another, so a comparison with any single number would fail some of them."""
    spec = _suite(runs, tmp_path)
    assert len({round(s, 6) for s in runs.tensor_sparsity["rl_a"].values()}) > 1
    _run(capsys, spec, runs.tuned["rl_a"], "--save-baseline", "baseline.json", "--baseline-missing", "skip")
    groups = json.loads(Path("baseline.json").read_text())["checks"][
        "x.sparsecheck.yaml::each-tensor-as-before"
    ]
    assert set(groups["groups"]["tensor"]) == set(runs.tensor_sparsity["rl_a"])
    same = _run(capsys, spec, runs.tuned["rl_a"], "--baseline", "baseline.json", "-k", "each")
    assert same.code == ExitCode.OK, same.out + same.err
    other = _run(
        capsys, spec, runs.tuned["rl_b"], "--baseline", "baseline.json", "-k", "each", "--json", "r.json"
    )
    assert other.code == ExitCode.CHECKS_FAILED
    (check,) = json.loads(Path("r.json").read_text())["checks"]
    assert check["message"].startswith(f"0/{len(runs.tensor_sparsity['rl_a'])} tensor groups pass")


def test_baseline_file_is_small_sorted_and_names_versions_and_fingerprints(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _suite(runs, tmp_path)
    _run(capsys, spec, runs.tuned["rl_a"], "-k", "measured", "--save-baseline", "baseline.json")
    text = Path("baseline.json").read_text()
    document = json.loads(text)
    assert text == json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert document["format"] == "sparsecheck-baseline"
    assert document["sparsecheck_version"] == sparsecheck.__version__
    assert isinstance(document["plugins"], dict)
    fingerprints = {c["source"]: c["fingerprint"] for c in document["checkpoints"]}
    assert set(fingerprints) == {str(runs.base), str(runs.tuned["rl_a"])}
    assert all(fingerprints.values())
    entry = document["checks"]["x.sparsecheck.yaml::measured"]
    assert entry["value"] == pytest.approx(runs.sparsity["rl_a"])
    assert entry["fields"]["sparsity"] == entry["value"]
    assert "groups" not in entry  # only a per: check keeps its groups
    assert len(text) < 4000


def test_a_baseline_operand_without_a_baseline_is_an_error_or_with_the_flag_a_skip(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _suite(runs, tmp_path)
    none = _run(capsys, spec, runs.tuned["rl_a"], "-k", "sparsity-kept")
    assert none.code == ExitCode.USAGE_ERROR
    assert "no --baseline FILE was given" in none.err  # nothing was measured: one error line
    assert "--baseline-missing skip" in none.err
    skipped = _run(capsys, spec, runs.tuned["rl_a"], "-k", "sparsity-kept", "--baseline-missing", "skip")
    assert skipped.code == ExitCode.OK, skipped.out
    assert "SKIP" in skipped.out

    missing_file = _run(capsys, spec, runs.tuned["rl_a"], "--baseline", "nope.json")
    assert missing_file.code == ExitCode.USAGE_ERROR
    assert missing_file.err.strip() == (
        "sparsecheck: error: option --baseline: nope.json: no such file (write it with --save-baseline)"
    )
    first_run = _run(
        capsys,
        spec,
        runs.tuned["rl_a"],
        "--baseline",
        "nope.json",
        "--baseline-missing",
        "skip",
        "--json",
        "r.json",
    )
    assert first_run.code == ExitCode.OK
    messages = [
        c["message"] for c in json.loads(Path("r.json").read_text())["checks"] if c["status"] == "SKIP"
    ]
    assert messages == ["baseline file nope.json does not exist (write it with --save-baseline)"] * 2


def test_a_check_absent_from_the_baseline_is_an_error(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _suite(runs, tmp_path)
    _run(capsys, spec, runs.tuned["rl_a"], "-k", "measured", "--save-baseline", "baseline.json")
    result = _run(capsys, spec, runs.tuned["rl_a"], "-k", "sparsity-kept", "--baseline", "baseline.json")
    assert result.code == ExitCode.USAGE_ERROR
    assert "check 'sparsity-kept' is not in baseline baseline.json" in result.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not JSON"),
        ('{"checks": {}}', "not a sparsecheck baseline"),
        ('{"format": "sparsecheck-baseline", "format_version": 9}', "baseline format version 9"),
    ],
)
def test_a_bad_baseline_file_is_one_line_naming_it(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    spec = _suite(runs, tmp_path)
    Path("bad.json").write_text(content)
    result = _run(capsys, spec, runs.tuned["rl_a"], "--baseline", "bad.json")
    assert result.code == ExitCode.USAGE_ERROR
    assert result.err.startswith("sparsecheck: error: option --baseline: bad.json: ")
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
