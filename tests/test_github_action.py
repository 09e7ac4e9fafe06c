"""The composite action (``action.yml``): its steps' ``run:`` scripts, run as GitHub runs them
(``bash -eo pipefail``, the inputs through each step's ``env:``, GitHub's variables set), with
no network: the install step runs against a stub interpreter that records what it was asked;
the run step uses the installed ``sparsecheck``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck.testing import PlantedPair, planted_pair

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
_INPUT = re.compile(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}")

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
"""


def _step(step_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    steps = ACTION["runs"]["steps"]
    return next(s for s in steps if (step_id and s.get("id") == step_id) or (name and s.get("name") == name))


def run_step(
    step: dict[str, Any], inputs: dict[str, str], workdir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run one step's script the way the runner does."""
    values = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()}
    unknown = set(inputs) - set(values)
    assert not unknown, f"not inputs of action.yml: {unknown}"
    values.update(inputs)
    step_env = {
        key: _INPUT.sub(lambda m: values[m.group(1)], str(value))
        for key, value in step.get("env", {}).items()
    }
    assert step["shell"] == "bash"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        cwd=workdir,
        env={**env, **step_env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture
def github_env(tmp_path: Path) -> dict[str, str]:
    """The variables GitHub sets for a composite action's step; a summary an earlier step wrote."""
    summary = tmp_path / "step_summary.md"
    summary.write_text("## build: ok\n")
    (tmp_path / "output").write_text("")
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_ACTION_PATH": str(ROOT),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_WORKSPACE": str(tmp_path / "repo"),
        DISABLE_AUTOLOAD_ENV: "1",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PlantedPair]:
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "accepted": planted_pair(root / "a", fraction=0.1),
        "regressed": planted_pair(root / "b", fraction=0.4),
    }


def test_the_action_gates_a_regression_and_passes_the_accepted_checkpoint(
    tmp_path: Path, github_env: dict[str, str], checkpoints: dict[str, PlantedPair]
) -> None:
    repo = Path(github_env["GITHUB_WORKSPACE"])
    (repo / "specs").mkdir(parents=True)
    (repo / "specs" / "gate.sparsecheck.yaml").write_text(SUITE.format(base=checkpoints["accepted"].base))
    step = _step(step_id="run")
    common = {"install": "false", "specs": "specs"}

    def gate(candidate: str, **inputs: str) -> subprocess.CompletedProcess[str]:
        args = f"--var candidate={checkpoints[candidate].tuned}"
        return run_step(step, {**common, "args": args, **inputs}, repo, github_env)

    first = gate("accepted", **{"save-baseline": "baseline.json", "baseline-missing": "skip"})
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads((repo / "baseline.json").read_text())["format"] == "sparsecheck-baseline"

    accepted = gate("accepted", baseline="baseline.json")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    regressed = gate("regressed", baseline="baseline.json", json="report.json")
    assert regressed.returncode == 1, regressed.stdout + regressed.stderr
    annotations = [line for line in regressed.stdout.splitlines() if line.startswith("::")]
    assert [line.split("::")[1] for line in annotations] == [
        "error file=specs/gate.sparsecheck.yaml,line=4,title=sparsity-kept",
        "error file=specs/gate.sparsecheck.yaml,line=8,title=layers-kept",
    ]
    assert "is not >= baseline.value - 0.02" in annotations[0]
    assert (repo / "report.json").exists()

    summary = Path(github_env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## build: ok\n")  # the earlier step's summary stays
    headings = re.findall(r"^## .*sparsecheck: .*$", summary, flags=re.MULTILINE)
    assert len(headings) == 3 and "2 failed" in headings[2] and "2 passed" in headings[1]
    assert Path(github_env["GITHUB_OUTPUT"]).read_text().splitlines() == [
        "exit-code=0",
        "exit-code=0",
        "exit-code=1",
    ]


def test_a_usage_error_is_the_steps_exit_code(tmp_path: Path, github_env: dict[str, str]) -> None:
    repo = Path(github_env["GITHUB_WORKSPACE"])
    repo.mkdir()
    result = run_step(_step(step_id="run"), {"install": "false", "specs": "missing"}, repo, github_env)
    assert result.returncode == 4
    assert "missing: no such file or folder" in result.stderr


def test_without_specs_the_action_runs_the_paths_of_pyproject(
    tmp_path: Path, github_env: dict[str, str], checkpoints: dict[str, PlantedPair]
) -> None:
    repo = Path(github_env["GITHUB_WORKSPACE"])
    pair = checkpoints["accepted"]
    gate = "version: 1\ncheckpoints: {{base: '{}', tuned: '{}'}}\nchecks:\n"
    gate += "  - {{id: {}, metric: update_sparsity, args: {{base: base, tuned: tuned}}}}\n"
    (repo / "specs").mkdir(parents=True)
    (repo / "specs" / "gate.sparsecheck.yaml").write_text(gate.format(pair.base, pair.tuned, "kept"))
    # Elsewhere in the repository: a spec that cannot run here (like a plugin's example spec).
    (repo / "plugins").mkdir()
    (repo / "plugins" / "x.sparsecheck.yaml").write_text(gate.format("missing", "missing", "other"))
    (repo / "pyproject.toml").write_text('[tool.sparsecheck]\npaths = ["specs"]\n')
    step = _step(step_id="run")
    result = run_step(step, {"install": "false", "json": "report.json"}, repo, github_env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((repo / "report.json").read_text())
    assert [check["nodeid"] for check in report["checks"]] == ["specs/gate.sparsecheck.yaml::kept"]
    (repo / "pyproject.toml").unlink()
    everything = run_step(step, {"install": "false"}, repo, github_env)
    assert everything.returncode == 4, everything.stdout + everything.stderr
    assert "plugins/x.sparsecheck.yaml" in everything.stdout + everything.stderr


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({}, ["-m pip install {root}"]),
        ({"extras": "hub,plots"}, ["-m pip install {root}[hub,plots]"]),
        (
            {"torch": "true"},
            [
                "-m pip install --index-url https://download.pytorch.org/whl/cpu torch",
                "-m pip install {root}",
            ],
        ),
    ],
)
def test_the_install_step_installs_this_checkout_and_torch_only_when_asked(
    tmp_path: Path, github_env: dict[str, str], inputs: dict[str, str], expected: list[str]
) -> None:
    stub = tmp_path / "python-stub"
    log = tmp_path / "calls"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    stub.chmod(0o755)
    step = _step(name="Install sparsecheck")
    assert step["if"] == "inputs.install == 'true'"
    result = run_step(step, {"python": str(stub), **inputs}, tmp_path, github_env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [line.format(root=ROOT) for line in expected]
