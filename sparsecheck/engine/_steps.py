"""Running spec steps for a session: the steps the selected checks read, in dependency order.

:func:`prepare_checks` runs every step that a selected, not skipped check reads (directly or
through other steps), each once per session, dependencies first, then points the checks at
the outputs.  A step's output is reused from the work folder when its key is unchanged (see
:mod:`sparsecheck.engine._workdir`); the key covers:

- the step's settings (backend, algorithm, hyperparameters, data, snapshots, device; a mask's
  policy and selection), input key names left out;
- the content of its inputs: a checkpoint's fingerprint (``CheckpointReader.fingerprint``, of a
  step's output too), a mask file's SHA-256;
- for a train step, the backend's name and implementing class.

A step that fails (a usage error such as an unknown backend or a missing mask file, or an error
of the backend) fails the checks that read it, and the steps after it, with its message; other
steps and checks run.  Each step prints one line (``step full: trained dpo (trl) in 12.3s``,
``step full: reused …``) unless ``-q``; a step of several spec files with the same output prints
it once.  While a step builds, it is a progress task (:mod:`sparsecheck._progress`) whose steps
a training backend may count.  ``session.steps`` holds a :class:`StepRecord` per step,
which the JSON report lists under ``steps``: id, action, status (``ran``, ``reused``,
``failed``, ``blocked``), outputs, seconds, message and details; a train step's details hold
its log as ``series`` (``step``, ``loss``, … lists of equal length) and ``mask_violations``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sparsecheck import _progress as progress
from sparsecheck._registry import collect_backends
from sparsecheck.checkpoints._open import open_checkpoint
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.engine._actions import Produced, train, write_mask
from sparsecheck.engine._outcome import StepRecord
from sparsecheck.engine._workdir import WorkFolder, file_digest, work_key
from sparsecheck.errors import SparsecheckError, SpecError, UsageError
from sparsecheck.spec._messages import did_you_mean
from sparsecheck.spec._model import Check, CheckpointRef, Step
from sparsecheck.spec._steps import step_inputs
from sparsecheck.training._api import TrainingBackend

if TYPE_CHECKING:
    from sparsecheck._config import Config, Session


@dataclass
class Prepared:
    """The checks pointed at their steps' outputs, and those a failed step stops."""

    #: Every check, in order; one reading a step's output has that output as its source.
    checks: list[Check]
    #: Nodeid → the error of a step the check reads.
    errors: dict[str, SparsecheckError]

    @property
    def runnable(self) -> list[Check]:
        return [check for check in self.checks if check.nodeid not in self.errors]


def prepare_checks(session: Session, checks: Sequence[Check]) -> Prepared:
    """Run the steps ``checks`` read (each once per session) and resolve the checks' keys."""
    config = session.config
    wanted = [check for check in checks if check.skip is None]
    steps = needed_steps(config, wanted)
    if steps:
        runner = _Runner(config, session.steps)
        runner.check_backends([step for step in steps if step.nodeid not in session.steps])
        for step in steps:
            if step.nodeid not in session.steps:
                shown = {record.folder for record in session.steps.values() if record.folder is not None}
                session.steps[step.nodeid] = record = runner.run(step)
                if record.folder is None or record.folder not in shown:  # one line per output
                    runner.report(record)
    resolved, errors = [], {}
    for check in checks:
        outcome = _resolve(config, check, session.steps) if check.skip is None else check
        if isinstance(outcome, SparsecheckError):
            errors[check.nodeid] = outcome
            resolved.append(check)
        else:
            resolved.append(outcome)
    return Prepared(resolved, errors)


def _produced_refs(config: Config, check: Check) -> list[CheckpointRef]:
    return [ref for _, ref in step_inputs(config.metric(check.metric), check.args, check.checkpoints)]


def needed_steps(config: Config, checks: Sequence[Check]) -> list[Step]:
    """The steps ``checks`` read, directly or through other steps, each after those it reads."""
    order: dict[str, Step] = {}

    def visit(step: Step) -> None:
        if step.nodeid in order:
            return
        for ref in step.inputs.values():
            if ref.step is not None:
                visit(ref.step)
        order[step.nodeid] = step

    for check in checks:
        for ref in _produced_refs(config, check):
            assert ref.step is not None
            visit(ref.step)
    return list(order.values())


def _resolve(config: Config, check: Check, records: Mapping[str, StepRecord]) -> Check | SparsecheckError:
    """``check`` reading its steps' outputs, or the error of a step it reads."""
    table = dict(check.checkpoints)
    for ref in _produced_refs(config, check):
        assert ref.step is not None
        record = records[ref.step.nodeid]
        if record.error is not None:
            return record.error
        table[ref.key] = dataclasses.replace(ref, source=str(record.outputs[ref.key]))
    return dataclasses.replace(check, checkpoints=table)


class _Runner:
    """Runs steps into the work folder, with the backends and the records of steps run before."""

    def __init__(self, config: Config, records: Mapping[str, StepRecord]) -> None:
        self.config = config
        self.records = records
        self.work = WorkFolder(config.cache_dir)
        self.verbosity: int = config.getoption("verbosity", 0)
        self._backends: dict[str, TrainingBackend] | None = None
        self._invalid: dict[str, SparsecheckError] = {}

    # -- backends ------------------------------------------------------------------------------

    def check_backends(self, steps: Sequence[Step]) -> None:
        """Find each train step's backend and algorithm before any step runs, so a typo in the
        last step does not wait for the first one's training."""
        for step in steps:
            if step.action == "train":
                try:
                    self.backend(step)
                except SparsecheckError as exc:
                    self._invalid[step.nodeid] = _step_error(step, exc)

    def backend(self, step: Step) -> TrainingBackend:
        if self._backends is None:
            self._backends = collect_backends(self.config.pluginmanager)
        name, algorithm = step.settings["backend"], step.settings["algorithm"]
        if name not in self._backends:
            installed = ", ".join(sorted(self._backends)) or (
                "none is installed; for TRL: `pip install -e plugins/sparsecheck-trl` in the repository"
            )
            hint = did_you_mean(name, self._backends) or f" (training backends: {installed})"
            raise SpecError(f"train.backend: unknown training backend {name!r}{hint}", step.location)
        backend = self._backends[name]
        if algorithm not in backend.algorithms:
            hint = did_you_mean(algorithm, backend.algorithms)
            raise SpecError(
                f"train.algorithm: training backend {name!r} has no algorithm {algorithm!r}{hint}; "
                f"its algorithms: {', '.join(backend.algorithms)}",
                step.location,
            )
        return backend

    # -- running -------------------------------------------------------------------------------

    def run(self, step: Step) -> StepRecord:
        """Reuse or build ``step``'s output; a failure is a ``failed`` record, not an exception."""
        if step.nodeid in self._invalid:
            error = self._invalid[step.nodeid]
            return StepRecord(step, "failed", message=error.message, error=error)
        for ref in step.inputs.values():
            upstream = self.records[ref.step.nodeid] if ref.step is not None else None
            if upstream is not None and upstream.error is not None:
                failed = upstream.status == "failed"
                message = f"needs step {upstream.step.id!r}, which failed" if failed else upstream.message
                return StepRecord(step, "blocked", message=message, error=upstream.error)
        began = time.perf_counter()
        try:
            record = self._reuse_or_build(step)
        except Exception as exc:
            error = _step_error(step, exc)
            seconds = time.perf_counter() - began
            return StepRecord(step, "failed", seconds=seconds, message=error.message, error=error)
        record.seconds = time.perf_counter() - began
        return record

    def _reuse_or_build(self, step: Step) -> StepRecord:
        with contextlib.ExitStack() as stack:
            readers = {role: self._open(step, ref, stack) for role, ref in step.inputs.items()}
            files = {role: self._file(step, role, path) for role, path in step.files.items()}
            material: dict[str, Any] = {
                "action": step.action,
                "settings": {k: v for k, v in step.settings.items() if k not in (*step.inputs, *files)},
                "inputs": {role: _identity(source) for role, source in readers.items()},
                "files": {role: file_digest(path) for role, path in files.items()},
            }
            backend = self.backend(step) if step.action == "train" else None
            if backend is not None:
                material["backend"] = [backend.name, type(backend).__module__, type(backend).__qualname__]
            key = work_key(material)
            folder = self.work.folder(step.id, key)
            stored = self.work.completed(step.id, key)
            if stored is not None:
                outputs = {name: folder / relative for name, relative in stored["outputs"].items()}
                return StepRecord(step, "reused", key, folder, outputs, details=stored.get("details", {}))
            began = time.perf_counter()
            doing = "training" if backend is not None else "writing the mask"
            with self.work.build(step.id, key) as building, progress.task(f"step {step.id}: {doing}"):
                if backend is not None:
                    mask = readers.get("mask", files.get("mask"))
                    base, reward_model = readers["base"], readers.get("reward_model")
                    assert isinstance(base, CheckpointReader) and not isinstance(mask, CheckpointReader)
                    reward_path = reward_model.path if isinstance(reward_model, CheckpointReader) else None
                    produced = train(step, backend, base.path, mask, building, reward_path)
                else:
                    base, tuned = readers["base"], readers["tuned"]
                    assert isinstance(base, CheckpointReader) and isinstance(tuned, CheckpointReader)
                    produced = write_mask(step, base, tuned, building)
                self.work.write_record(building, _stored(step, key, material, produced, began))
        outputs = {name: folder / relative for name, relative in produced.outputs.items()}
        return StepRecord(step, "ran", key, folder, outputs, details=produced.details)

    def _open(self, step: Step, ref: CheckpointRef, stack: contextlib.ExitStack) -> CheckpointReader | Path:
        """A checkpoint input as an open reader; a mask step's output as its file."""
        if ref.step is not None:
            output = self.records[ref.step.nodeid].outputs[ref.key]
            if ref.kind == "mask":
                return output
            source, revision, spec_dir = str(output), None, output.parent
        else:
            source, revision, spec_dir = ref.source, ref.revision, step.spec_path.parent
        try:
            reader = open_checkpoint(self.config.hook, source, spec_dir, revision)
        except SparsecheckError as exc:
            if exc.location is None:
                exc.location = ref.location
            raise
        stack.callback(reader.close)
        return reader

    @staticmethod
    def _file(step: Step, role: str, path: Path) -> Path:
        if not path.is_file():
            raise UsageError(f"{step.action}.{role}: no such file {path}", step.location)
        return path

    # -- the terminal ----------------------------------------------------------------------------

    def report(self, record: StepRecord) -> None:
        """One line per step, unless quiet."""
        if self.verbosity < 0:
            return
        details, seconds = record.details, f"{record.seconds:.1f}s"
        if record.status == "ran" and record.step.action == "train":
            text = f"trained {details['algorithm']} ({details['backend']}) in {seconds}"
            violations = details.get("mask_violations")
            if violations:
                text += f"; {violations} masked entries changed"
        elif record.status == "ran":
            changed = f"{details['changed_fraction']:.2%} changed"
            text = f"wrote a mask ({details['policy']}, {changed}) in {seconds}"
        elif record.status == "reused":
            text = f"reused {record.folder}"
        elif record.status == "failed":
            text = f"FAILED: {record.error}"
        else:
            text = f"not run: {record.message}"
        click.echo(f"step {record.step.id}: {text}")


def _identity(source: CheckpointReader | Path) -> str:
    return source.fingerprint() if isinstance(source, CheckpointReader) else file_digest(source)


def _stored(
    step: Step, key: str, material: Mapping[str, Any], produced: Produced, began: float
) -> dict[str, Any]:
    """The record kept in the step's folder: enough to reuse it and to report it again."""
    return {
        "id": step.id,
        "action": step.action,
        "key": key,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - began, 3),
        "material": material,
        "outputs": produced.outputs,
        "details": produced.details,
    }


def _step_error(step: Step, error: BaseException) -> SparsecheckError:
    """``error`` as the failure of ``step``: a usage error stays one (exit 4), anything else is
    an internal error (exit 3); the original is the cause."""
    if isinstance(error, UsageError):
        location = error.location or step.location
        wrapped: SparsecheckError = UsageError(f"step {step.id!r}: {error.message}", location)
    else:
        text = error.message if isinstance(error, SparsecheckError) else f"{type(error).__name__}: {error}"
        wrapped = SparsecheckError(f"step {step.id!r} failed: {text}", step.location)
    wrapped.__cause__ = error
    return wrapped
