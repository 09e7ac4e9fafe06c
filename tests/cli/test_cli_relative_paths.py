"""Relative paths given the way a user types them, through the installed console script.

A spec with chained steps (train → mask → train on the mask) run with ``--cache-dir relcache``
from a folder that is neither the spec's nor the cache's parent: every step must find the
output of the one before it, the JSON report must record absolute step outputs, and the same
run with the absolute cache folder must reuse every step and give the same results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_support import CliResult, run_console_script

from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint

#: A local plugin (``sparsecheck_plugin.py`` beside the spec): a training backend that plants
#: seeded changes in its base, inside the mask when one is given.
PLUGIN = """
import torch
from safetensors.torch import load_file
from sparsecheck._markers import hookimpl
from sparsecheck.metrics._maskfile import MaskFile
from sparsecheck.testing import plant_changes, write_checkpoint
from sparsecheck.training._api import TrainingBackend, TrainResult


class Planting(TrainingBackend):
    name = "planting"
    algorithms = ("dpo",)

    def train(self, request):
        base = load_file(str(request.base / "model.safetensors"))
        tuned, _ = plant_changes(base, 0.3, seed=request.seed)
        if request.mask is not None:
            with MaskFile.open(request.mask) as masks:
                tuned = {n: torch.where(torch.from_numpy(masks.read(n).copy()), v, base[n])
                         for n, v in tuned.items()}
        write_checkpoint(request.output, tuned)
        return TrainResult(request.output, [], [{"step": 1, "loss": 1.0}])


@hookimpl
def sparsecheck_add_backends():
    return [Planting()]
"""

SPEC = """\
version: 1
checkpoints: {base: ../ckpts/base}
steps:
  - id: full
    train: {backend: planting, algorithm: dpo, base: base, data: {size: 4}, hyperparameters: {seed: 1}}
  - id: full-mask
    mask: {base: base, tuned: full, policy: exact}
  - id: sub
    train: {backend: planting, algorithm: dpo, base: base, mask: full-mask, data: {size: 4},
            hyperparameters: {seed: 2}}
  - id: sub-mask
    mask: {base: base, tuned: sub, policy: exact}
checks:
  - id: full-sparsity
    metric: update_sparsity
    args: {base: base, tuned: full, policy: exact}
  - id: sub-inside-full
    metric: mask_overlap
    args: {mask_a: full-mask, mask_b: sub-mask}
    expect: {field: o2, eq: 1.0}
"""


def run_cli(cwd: Path, *args: str) -> CliResult:
    return run_console_script(cwd, *args, **{DISABLE_AUTOLOAD_ENV: "1"})


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """``ckpts/base``, ``specs/`` (spec + local plugin) and an unrelated working folder ``elsewhere``."""
    write_checkpoint(tmp_path / "ckpts" / "base", tiny_llama_state_dict(dtype=torch.float32))
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "chain.sparsecheck.yaml").write_text(SPEC, encoding="utf-8")
    (tmp_path / "specs" / "sparsecheck_plugin.py").write_text(PLUGIN, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def _checks(report: Path) -> dict[str, tuple[str, object]]:
    data = json.loads(report.read_text())
    return {check["id"]: (check["status"], check["value"]) for check in data["checks"]}


def test_chained_steps_with_a_relative_cache_dir(layout: Path) -> None:
    cwd = layout / "elsewhere"
    spec = "../specs/chain.sparsecheck.yaml"
    first = run_cli(cwd, "run", spec, "--cache-dir", "relcache", "--json", "first.json")
    assert first.code == 0, first.out + first.err
    data = json.loads((cwd / "first.json").read_text())
    assert [step["status"] for step in data["steps"]] == ["ran"] * 4
    for step in data["steps"]:
        for output in step["outputs"].values():
            assert Path(output).is_absolute() and Path(output).exists(), output
            assert Path(output).is_relative_to(cwd / "relcache" / "work")
    assert {check["status"] for check in data["checks"]} == {"PASS"}

    # the same folder named absolutely: every step reused, the same results
    second = run_cli(cwd, "run", spec, "--cache-dir", str(cwd / "relcache"), "--json", "second.json")
    assert second.code == 0, second.out + second.err
    again = json.loads((cwd / "second.json").read_text())
    assert [step["status"] for step in again["steps"]] == ["reused"] * 4
    assert _checks(cwd / "second.json") == _checks(cwd / "first.json")
    assert not (layout / "specs" / "relcache").exists() and not (cwd / "relcache" / "relcache").exists()


def test_the_planted_sparsity_is_what_the_relative_run_reports(layout: Path) -> None:
    """The check reads the trained output, not something else found by a wrong path."""
    cwd = layout / "elsewhere"
    done = run_cli(cwd, "run", "../specs", "--cache-dir", "c", "--json", "r.json", "-k", "full-sparsity")
    assert done.code == 0, done.out + done.err
    base = tiny_llama_state_dict(dtype=torch.float32)
    _, changed = plant_changes(base, 0.3, seed=1)
    total = sum(mask.numel() for mask in changed.values())
    expected = 1 - sum(int(mask.sum()) for mask in changed.values()) / total
    value = _checks(cwd / "r.json")["full-sparsity"][1]
    assert value == pytest.approx(expected, abs=1e-9)
