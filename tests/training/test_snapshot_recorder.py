"""The snapshot recorder: packed ever-changed masks, checkpoint-<step> folders, the JSON-lines log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsecheck.checkpoints._runs import run_checkpoints
from sparsecheck.metrics._maskfile import MaskFile
from sparsecheck.training._api import SnapshotPolicy
from sparsecheck.training._snapshots import SnapshotRecorder, count_bits, pack_bits, unpack_bits

METADATA = {"policy": "exact", "tol": "0.0"}


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 5), (4, 6, 3)])
def test_pack_bits_matches_numpy_little_endian(shape: tuple[int, ...]) -> None:
    mask = np.random.default_rng(len(shape)).random(shape) < 0.5
    packed = pack_bits(torch.from_numpy(mask))
    assert np.array_equal(packed.numpy(), np.packbits(mask.reshape(-1), bitorder="little"))
    assert np.array_equal(unpack_bits(packed.numpy(), shape), mask)
    assert count_bits(packed) == int(mask.sum())


def save_state(model: torch.nn.Module) -> Callable[[Path], None]:
    def save(folder: Path) -> None:
        folder.mkdir(parents=True)
        save_file(
            {n: t.contiguous() for n, t in model.state_dict().items()}, str(folder / "model.safetensors")
        )

    return save


def scripted_run(
    tmp_path: Path, policy: SnapshotPolicy
) -> tuple[SnapshotRecorder, dict[int, dict[str, torch.Tensor]]]:
    """Steps 1-3 of a run: step 1 moves weight[0], step 2 puts it back and moves bias[1], step 3
    moves nothing.  Returns the recorder (finished) and the state at each step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    recorder = SnapshotRecorder(model, tmp_path, policy, save=save_state(model))
    base_weight = model.weight.detach().clone()
    states = {}
    with torch.no_grad():
        for step in (1, 2, 3):
            if step == 1:
                model.weight[0] += 1.0
            if step == 2:
                model.weight.copy_(base_weight)
                model.bias[1] += 1.0
            states[step] = {n: t.clone() for n, t in model.state_dict().items()}
            recorder.record(step)
            recorder.log(step, {"loss": 1.0 / step, "note": "text", "flag": True})
    return recorder, states


def test_every_step_records_the_union_of_changes_snapshots_and_log(tmp_path: Path) -> None:
    recorder, states = scripted_run(tmp_path, SnapshotPolicy(every=1, full=True))
    recorder.record(3)  # the same step again: nothing new
    recorder.log(3, {"train_runtime": 9.5})  # a second record of step 3 joins its line
    run = recorder.finish(3, METADATA)

    with MaskFile.open(run.changed_mask) as mask_file:
        assert mask_file.names() == ["weight", "bias"]
        assert np.array_equal(mask_file.read("weight"), np.array([[True] * 3, [False] * 3]))
        assert np.array_equal(mask_file.read("bias"), np.array([False, True]))
        assert mask_file.metadata["kind"] == "ever_changed"
        assert mask_file.metadata["recorded_steps"] == "1,2,3"

    assert [step for step, _ in run_checkpoints(tmp_path)] == [1, 2, 3]
    assert run.snapshots == [tmp_path / f"checkpoint-{s}" for s in (1, 2, 3)]
    for step, state in states.items():
        saved = load_file(str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
        assert all(torch.equal(saved[n], state[n]) for n in state)

    lines = [json.loads(line) for line in run.log_file.read_text().splitlines()]
    assert lines == run.log
    assert lines == [
        {"step": 1, "loss": 1.0, "changed": 3, "ever_changed": 3},
        {"step": 2, "loss": 0.5, "changed": 1, "ever_changed": 4},
        {"step": 3, "loss": 1 / 3, "train_runtime": 9.5, "changed": 1, "ever_changed": 4},
    ]


def test_every_other_step_sees_only_those_steps_and_the_final_one(tmp_path: Path) -> None:
    recorder, _ = scripted_run(tmp_path, SnapshotPolicy(every=2, full=True))
    run = recorder.finish(3, METADATA)
    with MaskFile.open(run.changed_mask) as mask_file:
        assert not mask_file.read("weight").any()  # step 1's move was undone by step 2
        assert mask_file.read("bias").tolist() == [False, True]
    assert run.snapshots == [tmp_path / "checkpoint-2", tmp_path / "checkpoint-3"]
    assert [r.get("changed") for r in run.log] == [None, 1, 1]


def test_without_full_snapshots_no_folders_are_written(tmp_path: Path) -> None:
    recorder, _ = scripted_run(tmp_path, SnapshotPolicy(every=1, full=False))
    run = recorder.finish(3, METADATA)
    assert run.snapshots == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ever_changed.mask.safetensors", "train_log.jsonl"]
