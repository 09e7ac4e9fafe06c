"""Planning the read pass: open each checkpoint once, pair names per check, map names to checks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sparsecheck.checkpoints._adapter import open_adapter
from sparsecheck.checkpoints._formats import WEIGHT_FILES
from sparsecheck.checkpoints._open import open_checkpoint
from sparsecheck.checkpoints._pairing import pair_tensors
from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor
from sparsecheck.checkpoints._runs import STEP_FOLDER, run_checkpoints
from sparsecheck.errors import SparsecheckError, UsageError
from sparsecheck.metrics._api import Metric, Reducer, SkippedTensor
from sparsecheck.spec._model import Check, CheckpointRef


@dataclass
class PlannedCheck:
    """A check ready for the pass: its reducer, the names it reads, or the error that stops it."""

    check: Check
    metric: Metric
    #: Arguments with checkpoint keys replaced by reader ids (what the reducer sees).
    args: dict[str, Any]
    reader_ids: list[str] = field(default_factory=list)
    names: tuple[str, ...] = ()
    #: Reader id → compared name → where that reader stores it (alias targets resolved).
    stored: Mapping[str, Mapping[str, StoredTensor]] = field(default_factory=dict)
    skipped: tuple[SkippedTensor, ...] = ()
    notes: tuple[str, ...] = ()
    reducer: Reducer | None = None
    error: BaseException | None = None
    seconds: float = 0.0


def reader_id(ref: CheckpointRef, spec_dir: Path) -> str:
    """A checkpoint's identity across spec files: its resolved path, or hub id and revision
    (an adapter's: its base's, ``+``, its own)."""
    if ref.base is not None:
        return f"{reader_id(ref.base, spec_dir)}+{reader_id(replace(ref, base=None), spec_dir)}"
    path = Path(ref.source).expanduser()
    path = path if path.is_absolute() else spec_dir / path
    if os.path.exists(path):  # False, too, when that cannot be told: opening it says why
        return str(path.resolve())
    return ref.source + (f"@{ref.revision}" if ref.revision and "@" not in ref.source else "")


class Planner:
    """Opens readers (each once), remembering the spec keys that name each, and plans checks
    against them."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook
        self.readers: dict[str, CheckpointReader] = {}
        self.open_errors: dict[str, SparsecheckError] = {}
        #: Reader id → the spec keys naming it (``base``, ``rl/checkpoint-20``), in order, once each.
        self.keys: dict[str, dict[str, None]] = {}

    def reader(self, ref: CheckpointRef, spec_dir: Path) -> str:
        rid = reader_id(ref, spec_dir)
        self.keys.setdefault(rid, {})[ref.key] = None
        if rid not in self.readers and rid not in self.open_errors:
            try:
                if ref.base is not None:
                    base = self.readers[self.reader(ref.base, spec_dir)]
                    self.readers[rid] = open_adapter(ref.source, spec_dir, base)
                else:
                    source = rid if Path(rid).is_absolute() else ref.source
                    self.readers[rid] = open_checkpoint(self.hook, source, spec_dir, ref.revision)
            except SparsecheckError as exc:
                if exc.location is None:
                    exc.location = ref.location
                self.open_errors[rid] = exc
        if rid in self.open_errors:
            raise self.open_errors[rid]
        return rid

    def plan(self, check: Check, metric: Metric) -> PlannedCheck:
        planned = PlannedCheck(check, metric, dict(check.args))
        try:
            self._resolve_args(planned)
            if metric.reads_tensors and planned.reader_ids:
                pairing = pair_tensors(
                    {rid: self.readers[rid] for rid in planned.reader_ids},
                    check.args.get("include", ()),
                    check.args.get("exclude", ()),
                    check.args.get("on_mismatch", "error"),
                    context=check.nodeid,
                )
                planned.names, planned.stored = pairing.names, pairing.stored
                planned.skipped, planned.notes = pairing.skipped, pairing.notes
            planned.reducer = metric.reducer(planned.args)
        except Exception as exc:
            planned.error = exc
        return planned

    def _resolve_args(self, planned: PlannedCheck) -> None:
        check = planned.check
        spec_dir = check.spec_path.parent
        for param in planned.metric.all_params():
            value = check.args.get(param.name)
            if value is None:
                continue
            if param.kind == "mask":
                planned.args[param.name] = self._mask(check, value, spec_dir, planned)
            elif param.kind == "masks":
                planned.args[param.name] = [self._mask(check, v, spec_dir, planned) for v in value]
            elif param.kind == "checkpoint":
                planned.args[param.name] = self._checkpoint(check, value, spec_dir, planned)
            elif param.kind == "checkpoints":
                planned.args[param.name] = [
                    self._checkpoint(check, v, spec_dir, planned, ref)
                    for key in value
                    for v, ref in self._run_members(check, key, spec_dir)
                ]

    def _mask(self, check: Check, value: Any, spec_dir: Path, planned: PlannedCheck) -> Any:
        """A mask argument: a mask step's file, a checkpoints key's reader, or a path as given."""
        ref = check.checkpoints.get(value)
        if ref is not None and ref.kind == "mask":  # a mask step's file
            return ref.source
        return value if ref is None else self._checkpoint(check, value, spec_dir, planned)

    def _run_members(self, check: Check, key: Any, spec_dir: Path) -> list[tuple[Any, CheckpointRef | None]]:
        """A key of a run list, or, when its path is a Trainer output folder (no weights of its
        own, ``checkpoint-<step>/`` inside), each of those subfolders in step order."""
        ref = check.checkpoints.get(key)
        folder = Path(reader_id(ref, spec_dir)) if ref else None
        if ref is None or folder is None or not _is_run_folder(folder):
            return [(key, None)]
        return [
            (f"{key}/{sub.name}", CheckpointRef(f"{key}/{sub.name}", str(sub), ref.location))
            for _, sub in run_checkpoints(folder)
        ]

    def _checkpoint(
        self, check: Check, key: Any, spec_dir: Path, planned: PlannedCheck, ref: CheckpointRef | None = None
    ) -> str:
        if ref is None and key not in check.checkpoints:
            raise UsageError(f"{check.id}: unknown checkpoint {key!r}", check.location)
        rid = self.reader(ref or check.checkpoints[key], spec_dir)
        if rid not in planned.reader_ids:
            planned.reader_ids.append(rid)
        return rid

    def describe_readers(self) -> dict[str, dict[str, Any]]:
        """What the JSON report lists of each checkpoint: path, format, dtypes, fingerprint and
        the spec keys naming it."""
        return {
            rid: {
                "source": reader.source,
                "path": reader.source if reader.remote else str(reader.path),  # a URL has no local path
                "format": reader.format,
                "dtypes": sorted({t.meta.dtype for t in reader.tensors().values()}),
                "fingerprint": reader.fingerprint(),
                "keys": list(self.keys.get(rid, {})),
            }
            for rid, reader in self.readers.items()
        }

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


def _is_run_folder(folder: Path) -> bool:
    try:
        return (
            folder.is_dir()
            and not any((folder / name).exists() for name in WEIGHT_FILES)
            and any(STEP_FOLDER.fullmatch(p.name) for p in folder.iterdir())
        )
    except OSError:  # not readable: opening it as a checkpoint says so
        return False


def add_readers(checkpoints: dict[str, dict[str, Any]], described: Mapping[str, Mapping[str, Any]]) -> None:
    """Add a pass's :meth:`Planner.describe_readers` to a session's ``checkpoints``: a checkpoint
    an earlier pass read keeps the keys that named it then, and gains the new ones."""
    for rid, info in described.items():
        entry = checkpoints.setdefault(rid, {})
        keys = dict.fromkeys([*entry.get("keys", ()), *info["keys"]])
        entry.update(info, keys=list(keys))


def where_stored(planned: Sequence[PlannedCheck]) -> dict[str, dict[str, StoredTensor]]:
    """Name → reader id → where it is stored, over every check of the pass."""
    where: dict[str, dict[str, StoredTensor]] = {}
    for item in planned:
        for rid, stored in item.stored.items():
            for name in item.names:
                where.setdefault(name, {})[rid] = stored[name]
    return where


def storage_order(where: Mapping[str, Mapping[str, StoredTensor]], readers: Sequence[str]) -> list[str]:
    """Names ordered by where the first reader that has them stores them (file, offset)."""

    def position(name: str) -> tuple[int, str, int]:
        rid = next(r for r in readers if r in where[name])
        stored = where[name][rid]
        return readers.index(rid), str(stored.file), stored.offset

    return sorted(where, key=position)
