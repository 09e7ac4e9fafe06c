"""Spec steps run the same from ``sparsecheck run``, ``sparsecheck validate`` and pytest, with a
training backend from the spec folder's local plugin file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

pytest_plugins = ["pytester"]

PLUGIN = """\
from safetensors.torch import load_file

from sparsecheck import hookimpl
from sparsecheck.testing import plant_changes, write_checkpoint
from sparsecheck.training._api import TrainingBackend, TrainResult


class Planted(TrainingBackend):
    name = "planted"
    algorithms = ("sft",)

    def train(self, request):
        base = load_file(str(request.base / "model.safetensors"))
        tuned, _ = plant_changes(base, request.hyperparameters["fraction"], seed=request.seed)
        return TrainResult(write_checkpoint(request.output, tuned))


@hookimpl
def sparsecheck_add_backends():
    return [Planted()]
"""

SPEC = """\
version: 1
checkpoints: {base: base}
steps:
  - id: tuned
    train: {backend: planted, algorithm: sft, base: base, data: {}, hyperparameters: {fraction: 0.25}}
checks:
  - id: quarter-changed
    metric: update_sparsity
    args: {base: base, tuned: tuned, policy: exact}
    expect: {between: [0.749, 0.751]}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    write_checkpoint(tmp_path / "base", tiny_llama_state_dict(dtype=torch.float32))
    (tmp_path / "sparsecheck_plugin.py").write_text(PLUGIN, encoding="utf-8")
    (tmp_path / "t.sparsecheck.yaml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def test_run_trains_then_reuses(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(folder / "t.sparsecheck.yaml")
    cache = str(folder / "cache")
    assert main(["run", spec, "--cache-dir", cache]) == ExitCode.OK
    assert "step tuned: trained sft (planted) in " in capsys.readouterr().out
    assert main(["run", spec, "--cache-dir", cache, "--no-cache"]) == ExitCode.OK
    assert "step tuned: reused " in capsys.readouterr().out
    assert main(["run", "-q", spec, "--cache-dir", cache]) == ExitCode.OK
    assert "step tuned" not in capsys.readouterr().out


def test_validate_checks_steps_without_training(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(folder / "t.sparsecheck.yaml")]) == ExitCode.OK
    text = SPEC.replace("base: base, data", "base: bsae, data")
    (folder / "t.sparsecheck.yaml").write_text(text)
    assert main(["validate", str(folder / "t.sparsecheck.yaml")]) == ExitCode.USAGE_ERROR
    column = text.splitlines()[4].index("bsae") + 1
    message = "step 'tuned': train.base: unknown checkpoint or step 'bsae' (did you mean 'base'?)"
    assert f"t.sparsecheck.yaml:5:{column}: {message}" in capsys.readouterr().err
    assert not (folder / ".sparsecheck_cache").exists()


def test_pytest_runs_the_steps_of_collected_checks(pytester: pytest.Pytester, folder: Path) -> None:
    for name in ("sparsecheck_plugin.py", "t.sparsecheck.yaml"):
        (pytester.path / name).write_text((folder / name).read_text())
    write_checkpoint(pytester.path / "base", tiny_llama_state_dict(dtype=torch.float32))
    result = pytester.runpytest("-p", "sparsecheck", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*t.sparsecheck.yaml::quarter-changed PASSED*"])
    work = pytester.path / ".sparsecheck_cache" / "work"
    assert [p.name.split("-")[0] for p in work.iterdir()] == ["tuned"]
