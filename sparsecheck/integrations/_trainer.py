"""The gate during training: run a spec against each checkpoint a ``transformers`` Trainer (or a
TRL trainer) saves.

::

    from sparsecheck.integrations import SparsecheckCallback

    trainer = SFTTrainer(model=..., args=SFTConfig(save_steps=100, ...), ...)
    trainer.add_callback(SparsecheckCallback("gate.sparsecheck.yaml", trainer=trainer))
    trainer.train()

At every save (``on_save``, on the main process only) the spec runs with the variables
``checkpoint`` (the folder just saved, ``<output_dir>/checkpoint-<step>``) and ``step`` set, so
the spec names the checkpoint as ``${checkpoint}``.  The results are logged through the
trainer's loggers (``trainer.log``: the console, TensorBoard, W&B… whatever ``report_to``
names) as ``sparsecheck/<check id>`` (the check's value) and ``sparsecheck/passed`` /
``sparsecheck/failed``; without ``trainer=`` they go to ``state.log_history`` (saved in
``trainer_state.json``).  With ``stop_on_fail`` (the default) a FAIL or ERROR stops training
after that save.  ``results`` keeps each save's step and outcomes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sparsecheck.engine._outcome import CheckOutcome, Status

logger = logging.getLogger("sparsecheck")


@dataclass(frozen=True)
class SaveResult:
    """The spec's outcomes on the checkpoint of one save."""

    step: int
    checkpoint: Path
    outcomes: list[CheckOutcome]
    exitstatus: int

    @property
    def failed(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.status in (Status.FAIL, Status.ERROR)]


class SparsecheckCallback(TrainerCallback):
    """Run ``spec`` (a spec file or folder, or several) on each saved checkpoint.

    ``vars`` are more spec variables; ``options`` are ``sparsecheck run`` options by dest name
    (``{"json_path": Path("r.json"), "baseline": Path("baseline.json")}``); ``trainer`` is the
    trainer whose loggers get the results.
    """

    def __init__(
        self,
        spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        vars: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        stop_on_fail: bool = True,
        trainer: Any = None,
    ) -> None:
        specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
        self.specs = [Path(s) for s in specs]
        self.vars = dict(vars or {})
        self.options = dict(options or {})
        self.stop_on_fail = stop_on_fail
        self.trainer = trainer
        self.results: list[SaveResult] = []

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        if not state.is_world_process_zero:
            return control
        result = self.check(Path(str(args.output_dir)) / f"checkpoint-{state.global_step}", state.global_step)
        self._log(state, result)
        if self.stop_on_fail and result.failed:
            names = ", ".join(o.check.id for o in result.failed)
            logger.warning("sparsecheck: step %d: %s failed; stopping training", result.step, names)
            control.should_training_stop = True
        return control

    def check(self, checkpoint: Path, step: int) -> SaveResult:
        """Run the spec on ``checkpoint`` (``${checkpoint}``, ``${step}``)."""
        from sparsecheck._session import run_specs

        variables = {**self.vars, "checkpoint": str(checkpoint), "step": step}
        options = {"verbosity": -1, **self.options, "vars": variables}
        session = run_specs(self.specs, options, plugin_names=["no:terminal"])  # results go to the log
        result = SaveResult(step, checkpoint, list(session.outcomes), int(session.exitstatus))
        self.results.append(result)
        return result

    def _log(self, state: TrainerState, result: SaveResult) -> None:
        metrics: dict[str, float] = {}
        for outcome in result.outcomes:
            value = outcome.value
            if isinstance(value, int | float) and not isinstance(value, bool):
                metrics[f"sparsecheck/{outcome.check.id}"] = float(value)
        metrics["sparsecheck/passed"] = sum(o.status is Status.PASS for o in result.outcomes)
        metrics["sparsecheck/failed"] = len(result.failed)
        for outcome in result.failed:
            logger.warning("sparsecheck: step %d: %s %s: %s", result.step, outcome.status.value,
                           outcome.check.id, outcome.message)  # fmt: skip
        if self.trainer is not None:
            self.trainer.log(metrics)
        else:
            state.log_history.append({**metrics, "step": result.step})
