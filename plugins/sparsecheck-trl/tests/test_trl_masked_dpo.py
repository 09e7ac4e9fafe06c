"""Masked DPO on a tiny Llama: frozen entries stay bitwise at the base, the check can fail, and the
snapshots form a run that sparsecheck's transient metrics read.

AdamW with weight decay and a large learning rate: decay moves every nonzero entry, gradient or
not, so without restoring the frozen entries would drift.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file
from sparsecheck_trl import TrlBackend

from sparsecheck.metrics._maskfile import MaskFile, MaskWriter
from sparsecheck.testing import run_spec
from sparsecheck.training._api import GeneratedDataset, SnapshotPolicy, TrainRequest, TrainResult
from sparsecheck.training._masking import ExactMask

FROZEN_TENSOR = "model.layers.1.mlp.down_proj.weight"
OPEN_TENSOR = "model.norm.weight"
SETTINGS = {"lr": 0.05, "steps": 3, "batch_size": 4, "max_length": 64, "weight_decay": 0.1}
Masks = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def planted_mask(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Masks]:
    """About 30% of each tensor trainable; one tensor wholly frozen, one wholly trainable."""
    rng = np.random.default_rng(11)
    base = load_file(str(tiny_model / "model.safetensors"))
    masks = {name: rng.random(array.shape) < 0.3 for name, array in base.items()}
    masks[FROZEN_TENSOR][:] = False
    masks[OPEN_TENSOR][:] = True
    path = tmp_path_factory.mktemp("mask") / "sub.mask.safetensors"
    with MaskWriter(path, {"policy": "exact", "tol": "0.0"}) as writer:
        for name, mask in masks.items():
            writer.add(name, mask)
    return path, masks


def masked_dpo(tiny_model: Path, mask: Path, output: Path) -> TrainResult:
    request = TrainRequest(
        "dpo",
        tiny_model,
        output,
        GeneratedDataset(size=8, samples=2, max_new_tokens=8),
        SETTINGS,
        mask=mask,
        snapshots=SnapshotPolicy(every=1, full=True),
    )
    return TrlBackend().train(request)


@pytest.fixture(scope="module")
def masked(
    tiny_model: Path, planted_mask: tuple[Path, Masks], tmp_path_factory: pytest.TempPathFactory
) -> TrainResult:
    return masked_dpo(tiny_model, planted_mask[0], tmp_path_factory.mktemp("masked"))


@pytest.fixture(scope="module")
def unrestored(
    tiny_model: Path, planted_mask: tuple[Path, Masks], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrainResult]:
    """The negative control: gradients masked, frozen entries never restored."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ExactMask, "restore", lambda self: 0)
        yield masked_dpo(tiny_model, planted_mask[0], tmp_path_factory.mktemp("unrestored"))


def differs(base: Path, final: Path) -> dict[str, np.ndarray]:
    before, after = load_file(str(base / "model.safetensors")), load_file(str(final / "model.safetensors"))
    return {name: before[name].view(np.uint32) != after[name].view(np.uint32) for name in before}


def test_frozen_entries_stay_bitwise_while_trainable_entries_move(
    tiny_model: Path, planted_mask: tuple[Path, Masks], masked: TrainResult
) -> None:
    _, masks = planted_mask
    moved = differs(tiny_model, masked.checkpoint)
    for name, mask in masks.items():
        assert not (moved[name] & ~mask).any(), name
    trainable_moved = sum(int((moved[n] & m).sum()) for n, m in masks.items())
    assert trainable_moved > 0.95 * sum(int(m.sum()) for m in masks.values())
    assert masked.mask_violations == 0


def test_mask_report_counts_the_fixes_restoring_made(
    planted_mask: tuple[Path, Masks], masked: TrainResult
) -> None:
    _, masks = planted_mask
    assert masked.mask_report is not None
    report = json.loads(masked.mask_report.read_text())
    assert report["violations"] == 0 and report["violations_by_tensor"] == {}
    assert report["fixed"] > 0  # weight decay did move frozen entries; restoring put them back
    assert report["restores"] == 3
    assert report["frozen_parameters"] == [FROZEN_TENSOR]
    assert report["trainable"] == sum(int(m.sum()) for m in masks.values())
    assert report["not_compared"] == []


def test_negative_control_reports_the_violations(
    tiny_model: Path, planted_mask: tuple[Path, Masks], unrestored: TrainResult
) -> None:
    _, masks = planted_mask
    moved = differs(tiny_model, unrestored.checkpoint)
    expected = sum(int((moved[n] & ~m).sum()) for n, m in masks.items())
    assert unrestored.mask_violations == expected > 0
    assert not moved[FROZEN_TENSOR].any()  # no gradient, so AdamW never touched it


def test_snapshots_are_a_run_that_sparsecheck_reads(
    tiny_model: Path, planted_mask: tuple[Path, Masks], masked: TrainResult, tmp_path: Path
) -> None:
    run = masked.checkpoint.parent
    assert masked.snapshots == [run / f"checkpoint-{step}" for step in (1, 2, 3)]
    spec = tmp_path / "transient.sparsecheck.yaml"
    spec.write_text(
        "version: 1\n"
        f"checkpoints: {{base: '{tiny_model}', run: '{run}'}}\n"
        "checks:\n"
        "  - {id: cats, metric: update_categories, args: {base: base, run: [run]}}\n"
        "  - {id: curve, metric: transient_updates, args: {base: base, run: [run]}}\n",
        encoding="utf-8",
    )
    session = run_spec(spec, options={"no_cache": True})
    cats, curve = (outcome.result for outcome in session.outcomes)
    assert cats is not None and curve is not None
    _, masks = planted_mask
    total = sum(m.size for m in masks.values())
    assert masked.changed_mask is not None
    with MaskFile.open(masked.changed_mask) as mask_file:
        ever = {name: mask_file.read(name) for name in mask_file.names()}
    assert all(not (ever[n] & ~masks[n]).any() for n in masks)  # never changed outside the mask, at any step
    assert cats.fields["untouched"] == (total - sum(int(e.sum()) for e in ever.values())) / total
    steps: list[Any] = [r for r in masked.log if "loss" in r]
    assert curve.series["step"] == [1, 2, 3] == [r["step"] for r in steps]
    assert curve.series["changed_fraction"] == [r["changed"] / total for r in steps]
