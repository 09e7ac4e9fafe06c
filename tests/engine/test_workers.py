"""Worker processes (``--workers``) prepare tensors ahead of the read pass: same results as one
process, errors and unpicklable memo values handled, and small passes stay in one process."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from sparsecheck import Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup, UsageError, hookimpl
from sparsecheck.engine import _shared
from sparsecheck.engine._prefetch import CAN_FORK
from sparsecheck.errors import SparsecheckError
from sparsecheck.testing import plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint

pytestmark = pytest.mark.skipif(not CAN_FORK, reason="worker processes need fork (Linux)")

EVERY_METRIC = """
version: 1
checkpoints: {base: base, tuned: tuned, other: other, rl: run}
checks:
  - {id: sparsity, metric: update_sparsity, args: {base: base, tuned: tuned}, per: tensor, expect: {ge: 0}}
  - {id: exact, metric: update_sparsity, args: {base: base, tuned: tuned, policy: exact}}
  - {id: rtol, metric: update_sparsity, args: {base: base, tuned: tuned, policy: rtol}, per: layer,
     expect: {ge: 0}}
  - {id: norms, metric: layernorm_sparsity, args: {base: base, tuned: tuned}}
  - {id: mask, metric: update_mask, args: {base: base, tuned: tuned, output: "out/mask.safetensors"}}
  - {id: overlap, metric: mask_overlap, args: {base: base, run_a: tuned, run_b: other}, per: layer,
     expect: {ge: 0}}
  - {id: similarity, metric: weight_similarity, args: {sub: tuned, full: other, base: base}}
  - {id: sweep, metric: tolerance_sweep, args: {base: base, tuned: tuned}}
  - {id: transient, metric: transient_updates, args: {base: base, run: [rl]}}
  - {id: categories, metric: update_categories, args: {base: base, run: [rl]}}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    base = tiny_llama_state_dict(hidden=64, intermediate=160, vocab=256, dtype=torch.bfloat16, seed=3)
    write_checkpoint(tmp_path / "base", base, layout="sharded", shards=3)
    tuned, _ = plant_changes(base, 0.2, seed=1)
    other, _ = plant_changes(base, 0.03, seed=2)  # few changes: the sparse path of compare
    write_checkpoint(tmp_path / "tuned", tuned)
    write_checkpoint(tmp_path / "other", other)
    for step, state in ((2, other), (4, tuned)):
        write_checkpoint(tmp_path / "run" / f"checkpoint-{step}", state)
    return tmp_path


def results(folder: Path, workers: int, plugins: Sequence[object] = ()) -> dict[str, dict[str, Any]]:
    spec = folder / "every.sparsecheck.yaml"
    spec.write_text(EVERY_METRIC, encoding="utf-8")
    session = run_spec(spec, plugins=plugins, options={"no_cache": True, "workers": workers})
    return {o.check.id: {"status": o.status.value, **_result(o.result)} for o in session.outcomes}


def _result(result: MetricResult | None) -> dict[str, Any]:
    return {} if result is None else result.to_dict()


@pytest.mark.parametrize("shared_from", [_shared.LARGE, 1], ids=["large-arrays-shared", "every-array-shared"])
def test_workers_give_the_results_of_one_process(
    folder: Path, shared_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every-array-shared: every memoized array, the packed masks too, comes back through /dev/shm
    monkeypatch.setattr(_shared, "LARGE", shared_from)
    before = set(_shared.FOLDER.glob(f"sparsecheck-{os.getpid()}-*"))
    one = results(folder, 1)
    mask_one = _mask_file(folder / "out" / "mask.safetensors")
    two = results(folder, 2)
    assert {check: row["status"] for check, row in one.items()} == dict.fromkeys(one, "PASS")
    assert two == one
    mask_two = _mask_file(folder / "out" / "mask.safetensors")
    assert mask_two[0] == mask_one[0]
    assert mask_two[1].keys() == mask_one[1].keys()
    assert all(np.array_equal(mask_two[1][name], packed) for name, packed in mask_one[1].items())
    assert set(_shared.FOLDER.glob(f"sparsecheck-{os.getpid()}-*")) == before  # none left behind


def _mask_file(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(path, "np") as handle:
        return dict(handle.metadata()), {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


class Recorder(Reducer):
    """Memoizes, in ``prepare``, the id of the process that ran it (and, when asked, a value
    that cannot be pickled, or an error); ``update`` records what it finds."""

    def __init__(self, tuned: str, mode: str) -> None:
        self.tuned, self.mode = tuned, mode
        self.seen: list[tuple[str, int, bool]] = []

    def _measure(self, group: TensorGroup) -> tuple[int, Any]:
        return group.memo(("recorder", self.tuned), lambda: (os.getpid(), (lambda: 0) if self.mode else None))

    def prepare(self, group: TensorGroup) -> None:
        if self.mode == "raise":
            raise ValueError(f"cannot prepare {group.name}")
        if self.mode == "die":
            os._exit(1)  # as the kernel's out-of-memory killer would end a worker
        if self.mode == "usage":
            raise UsageError(f"recorder: {group.name} is not what this check wants")
        self._measure(group)

    def update(self, group: TensorGroup) -> None:
        pid, _ = self._measure(group)
        self.seen.append((group.name, pid, group.array(self.tuned).size > 0))

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        workers = {pid for _, pid, _ in self.seen} - {os.getpid()}
        fields = {
            "tensors": len(self.seen),
            "in_workers": len(workers),
            "names": ",".join(n for n, *_ in self.seen),
        }
        return MetricResult("recorder", "tensors", fields, "test metric")


class RecorderMetric(Metric):
    name = "recorder"
    summary = "where prepare ran"
    value_field = "tensors"

    params = (
        Param("tuned", "checkpoint", "the checkpoint read"),
        Param("mode", "str", "what prepare does", ""),
    )

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return Recorder(args["tuned"], args["mode"])


class RecorderPlugin:
    @hookimpl
    def sparsecheck_add_metrics(self) -> list[Metric]:
        return [RecorderMetric()]


def record(folder: Path, mode: str, workers: int | None) -> tuple[str, dict[str, Any]]:
    spec = folder / "recorder.sparsecheck.yaml"
    spec.write_text(
        "version: 1\ncheckpoints: {tuned: tuned}\nchecks:\n"
        f"  - {{id: rec, metric: recorder, args: {{tuned: tuned, mode: '{mode}'}}}}\n",
        encoding="utf-8",
    )
    options: dict[str, Any] = (
        {"no_cache": True} if workers is None else {"no_cache": True, "workers": workers}
    )
    (outcome,) = run_spec(spec, plugins=[RecorderPlugin()], options=options).outcomes
    return outcome.status.value, {} if outcome.result is None else dict(outcome.result.fields)


def test_prepare_runs_in_workers_and_update_keeps_storage_order(folder: Path) -> None:
    status, fields = record(folder, "", 2)
    _, serial = record(folder, "", 1)
    assert status == "PASS"
    assert fields["in_workers"] >= 1 and serial["in_workers"] == 0
    assert fields["names"] == serial["names"] and fields["tensors"] > 10


def test_a_value_that_cannot_be_pickled_is_computed_again_in_the_main_process(folder: Path) -> None:
    status, fields = record(folder, "unpicklable", 2)
    assert status == "PASS"
    assert fields["in_workers"] == 0  # every value came from update's own computation


def test_an_error_in_prepare_is_the_checks_error(folder: Path) -> None:
    status, _ = record(folder, "raise", 2)
    assert status == "ERROR"
    spec = folder / "recorder.sparsecheck.yaml"
    session = run_spec(spec, plugins=[RecorderPlugin()], options={"no_cache": True, "workers": 2})
    assert "cannot prepare" in session.outcomes[0].message


def test_a_usage_error_in_prepare_stays_a_usage_error(folder: Path) -> None:
    spec = folder / "recorder.sparsecheck.yaml"
    record(folder, "usage", 2)
    (outcome,) = run_spec(spec, plugins=[RecorderPlugin()], options={"no_cache": True, "workers": 2}).outcomes
    assert outcome.status.value == "ERROR" and outcome.error_kind == "usage"
    assert "is not what this check wants" in outcome.message


def test_a_worker_that_dies_stops_the_run_with_one_clear_error(folder: Path) -> None:
    with pytest.raises(SparsecheckError, match=r"a worker process died preparing tensor .*--workers 1"):
        record(folder, "die", 2)


def test_a_small_pass_stays_in_one_process_by_default(folder: Path) -> None:
    status, fields = record(folder, "", None)
    assert status == "PASS" and fields["in_workers"] == 0
