"""transformers Trainer callbacks that put sparsecheck's engine-neutral pieces into a TRL run.

Both build their piece in ``on_train_begin``, on the model the optimizer updates once the
accelerator has prepared it (FSDP2 shards parameters in place by then).  transformers calls
``on_optimizer_step`` right after ``optimizer.step()`` and before ``on_step_end``, so the masked
entries are restored before a snapshot is recorded (PPO's loop restores in the optimizer's step
hook, also before ``on_step_end``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from sparsecheck.training import ExactMask, SnapshotPolicy, SnapshotRecorder, current_progress


class ExactMaskCallback(TrainerCallback):
    """Trains only the entries ``masks`` marks trainable (see :class:`ExactMask`).

    ``model``: the model the mask covers when the trainer optimizes more than it (PPO's policy
    beside its value model); such trainers run their own loop without ``on_optimizer_step``, so
    the restore is attached to the optimizer itself.
    """

    def __init__(self, masks: Mapping[str, np.ndarray], model: Any = None) -> None:
        self.masks = masks
        self.model = model
        self.exact: ExactMask | None = None

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kwargs: Any
    ) -> None:
        self.exact = ExactMask(self.model if self.model is not None else model, self.masks)
        if self.model is not None:
            self.exact.attach(getattr(optimizer, "optimizer", optimizer))

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.exact is not None and self.model is None:
            self.exact.restore()


class ProgressCallback(TrainerCallback):
    """Counts the optimizer steps on sparsecheck's current progress task (the engine's step)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        task = current_progress()
        if task is not None:
            task.set_total(state.max_steps, "steps")
            task.update(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        task = current_progress()
        if task is not None:
            task.update(state.global_step)


class RecorderCallback(TrainerCallback):
    """Feeds a :class:`SnapshotRecorder`: each optimizer step and each log record; a snapshot
    being saved shows on the progress task (``model``: the model to record when the trainer's
    holds more, as :class:`ExactMaskCallback`'s)."""

    def __init__(self, folder: Path, policy: SnapshotPolicy, model: Any = None) -> None:
        self.folder, self.policy, self.model = folder, policy, model
        self.recorder: SnapshotRecorder | None = None
        self._step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        recorded = self.model if self.model is not None else model

        def save(folder: Path) -> None:
            task = current_progress()
            if task is not None:
                task.update(task.done, f"recording the snapshot of step {self._step}")
            recorded.save_pretrained(folder)

        self.recorder = SnapshotRecorder(recorded, self.folder, self.policy, save=save)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.recorder is not None:
            self._step = state.global_step
            self.recorder.record(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if self.recorder is not None and logs:
            self.recorder.log(state.global_step, logs)
