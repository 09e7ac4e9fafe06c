"""What the two kinds of spec steps do in their work folder: fine-tune, or write a mask.

A train step asks its backend to write under ``<folder>/model``; the checkpoint it reports is
the key ``<id>``.  With snapshots, the ``checkpoint-<step>/`` folders it reports make the run
folder ``<id>.run``: the folder holding them when it is a run folder (no weights of its own),
else ``<folder>/run``, where they are moved.  A mask
step streams the tensors of its two checkpoints one name at a time and writes
``<folder>/mask.safetensors``.  Each returns its outputs, relative to the folder, and details
for the reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsecheck.checkpoints._formats import WEIGHT_FILES
from sparsecheck.checkpoints._pairing import pair_tensors
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.checkpoints._runs import STEP_FOLDER, run_checkpoints
from sparsecheck.errors import CheckpointError, PluginError
from sparsecheck.metrics._equality import EqualityPolicy, compare_arrays
from sparsecheck.metrics._maskfile import MaskWriter, mask_metadata
from sparsecheck.spec._model import Step
from sparsecheck.spec._steps import RUN_SUFFIX, generated_dataset
from sparsecheck.training._api import SnapshotPolicy, TrainingBackend, TrainRequest

MODEL = "model"
RUN = "run"
MASK_FILE = "mask.safetensors"


@dataclass
class Produced:
    """A step's outputs (key → path relative to its folder) and what the reports show of it."""

    outputs: dict[str, str]
    details: dict[str, Any] = field(default_factory=dict)


def train(
    step: Step,
    backend: TrainingBackend,
    base: Path,
    mask: Path | None,
    folder: Path,
    reward_model: Path | None = None,
) -> Produced:
    """Fine-tune ``base`` as ``step`` says, writing only under ``folder``."""
    settings = step.settings
    hyperparameters = dict(settings.get("hyperparameters", {}))
    seed = hyperparameters.pop("seed", 0)
    every = settings.get("snapshots", {}).get("every")
    request = TrainRequest(
        algorithm=settings["algorithm"],
        base=base,
        output=folder / MODEL,
        dataset=generated_dataset(settings["data"]),
        hyperparameters=hyperparameters,
        mask=mask,
        seed=seed,
        device=settings.get("device", "auto"),
        snapshots=SnapshotPolicy(every=every, full=True) if every else SnapshotPolicy(),
        reward_model=reward_model,
    )
    result = backend.train(request)
    outputs = {step.id: _inside(result.checkpoint, folder, backend, "its checkpoint")}
    if every:
        outputs[step.id + RUN_SUFFIX] = _gather_snapshots(result.snapshots, folder, backend)
    details = {
        "backend": backend.name,
        "algorithm": request.algorithm,
        "seed": seed,
        "mask_violations": result.mask_violations,
        "series": log_series(result.log),
    }
    return Produced(outputs, details)


def _inside(path: Path, folder: Path, backend: TrainingBackend, what: str) -> str:
    """``path`` relative to ``folder``; a backend writing elsewhere broke its contract."""
    name = backend.name
    try:
        relative = Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        raise PluginError(f"training backend {name!r} wrote {what} outside its folder: {path}") from None
    if not (folder / relative).exists():
        raise PluginError(f"training backend {name!r} reported {what} at {path}, which does not exist")
    return relative.as_posix()


def _gather_snapshots(snapshots: Sequence[Path], folder: Path, backend: TrainingBackend) -> str:
    """The run folder of the snapshots, relative to ``folder``: the folder holding them when it
    is a run folder (no weights of its own), else ``run/``, where they are moved."""
    for snapshot in snapshots:
        _inside(snapshot, folder, backend, "a snapshot")
        if not STEP_FOLDER.fullmatch(Path(snapshot).name):
            raise PluginError(
                f"training backend {backend.name!r} named a snapshot {Path(snapshot).name!r}, "
                "not checkpoint-<step>"
            )
    parents = {Path(snapshot).resolve().parent for snapshot in snapshots}
    run = parents.pop() if len(parents) == 1 else None
    if run is None or any((run / name).exists() for name in WEIGHT_FILES):
        run = folder.resolve() / RUN
        run.mkdir(exist_ok=True)
        for snapshot in snapshots:
            if Path(snapshot).resolve().parent != run:
                os.rename(snapshot, run / Path(snapshot).name)
    try:
        run_checkpoints(run)
    except CheckpointError:
        raise PluginError(f"training backend {backend.name!r} wrote no snapshots, though asked to") from None
    return run.relative_to(folder.resolve()).as_posix()


def log_series(log: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """A training log as series: ``step``, and a list per logged number (None where a line
    lacks it), e.g. ``{"step": [1, 2], "loss": [0.69, 0.61]}``."""
    lines = [line for line in log if _is_number(line.get("step"))]
    names = dict.fromkeys(
        name for line in lines for name, value in line.items() if name != "step" and _is_number(value)
    )
    series: dict[str, list[Any]] = {"step": [line["step"] for line in lines]}
    for name in names:
        series[name] = [line[name] if _is_number(line.get(name)) else None for line in lines]
    return series


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def write_mask(step: Step, base: CheckpointReader, tuned: CheckpointReader, folder: Path) -> Produced:
    """Write the mask of the entries changed from ``base`` to ``tuned`` under ``folder``."""
    settings = step.settings
    policy = EqualityPolicy.from_args({"policy": settings.get("policy", "exact"), "tol": settings.get("tol")})
    pairing = pair_tensors(
        {"base": base, "tuned": tuned},
        settings.get("include", []),
        settings.get("exclude", []),
        settings.get("on_mismatch", "error"),
        context=f"step {step.id!r}",
    )
    changed = total = 0
    with MaskWriter(folder / MASK_FILE, mask_metadata(policy, base, tuned)) as writer:
        for name in pairing.names:
            a, b = pairing.stored["base"][name].meta, pairing.stored["tuned"][name].meta
            comparison = compare_arrays(base.read(a.name), a.dtype, tuned.read(b.name), b.dtype, policy)
            writer.add_packed(name, comparison.packed, comparison.shape)
            changed, total = changed + comparison.changed, total + comparison.numel
            base.release(a.name)
            tuned.release(b.name)
    details = {
        "policy": policy.describe(),
        "tensors": len(pairing.names),
        "changed_fraction": changed / total if total else 0.0,
        "skipped": [f"{s.name}: {s.reason}" for s in pairing.skipped],
    }
    return Produced({step.id: MASK_FILE}, details)
