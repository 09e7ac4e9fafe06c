"""transformers Trainer callbacks that put sparsecheck's engine-neutral pieces into a TRL run.

Both build their piece in ``on_train_begin``, on the model the optimizer updates once the
accelerator has prepared it (FSDP2 shards parameters in place by then).  transformers calls
``on_optimizer_step`` right after ``optimizer.step()`` and before ``on_step_end``, so the masked
entries are restored before a snapshot is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from sparsecheck import _progress as progress
from sparsecheck.training._api import SnapshotPolicy
from sparsecheck.training._masking import ExactMask
from sparsecheck.training._snapshots import SnapshotRecorder


class ExactMaskCallback(TrainerCallback):
    """Trains only the entries ``masks`` marks trainable (see :class:`ExactMask`)."""

    def __init__(self, masks: Mapping[str, np.ndarray]) -> None:
        self.masks = masks
        self.exact: ExactMask | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.exact = ExactMask(model, self.masks)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.exact is not None:
            self.exact.restore()


class ProgressCallback(TrainerCallback):
    """Counts the optimizer steps on sparsecheck's current progress task (the engine's step)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        task = progress.current()
        if task is not None:
            task.set_total(state.max_steps, "steps")
            task.update(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        task = progress.current()
        if task is not None:
            task.update(state.global_step)


class RecorderCallback(TrainerCallback):
    """Feeds a :class:`SnapshotRecorder`: each optimizer step and each log record; a snapshot
    being saved shows on the progress task."""

    def __init__(self, folder: Path, policy: SnapshotPolicy) -> None:
        self.folder, self.policy = folder, policy
        self.recorder: SnapshotRecorder | None = None
        self._step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        def save(folder: Path) -> None:
            task = progress.current()
            if task is not None:
                task.update(task.done, f"recording the snapshot of step {self._step}")
            model.save_pretrained(folder)

        self.recorder = SnapshotRecorder(model, self.folder, self.policy, save=save)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None:
            self._step = state.global_step
            self.recorder.record(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if self.recorder is not None and logs:
            self.recorder.log(state.global_step, logs)
