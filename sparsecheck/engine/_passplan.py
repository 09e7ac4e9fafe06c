"""The plan of a read pass's ``prepare`` work: each name's group and wanting checks, and
running the reducers' ``prepare`` for names in whichever process holds the plan (a forked worker
or a Ray task), with what they memoized sent back by pickle (large arrays from forked workers
through shared memory: :mod:`._shared`)."""

from __future__ import annotations

import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor
from sparsecheck.engine._shared import SharedBuffers
from sparsecheck.metrics._api import TensorGroup

if TYPE_CHECKING:
    from sparsecheck.engine._plan import PlannedCheck


@dataclass
class Prepared:
    """One tensor name, ready for the reducers' ``update``."""

    group: TensorGroup
    items: Sequence[PlannedCheck]
    #: Seconds each item's ``prepare`` took, and the errors it raised, by position in ``items``.
    seconds: list[float] = field(default_factory=list)
    errors: dict[int, BaseException] = field(default_factory=dict)

    def run(self) -> Prepared:
        for position, item in enumerate(self.items):
            began = time.perf_counter()
            if item.error is None and item.reducer is not None:
                try:
                    item.reducer.prepare(self.group)
                except Exception as exc:
                    self.errors[position] = exc
            self.seconds.append(time.perf_counter() - began)
        return self


class PassPlan:
    """What preparing a tensor name needs: where each name is stored, the checks wanting it, and
    the open readers.  Forked workers inherit it; it also travels by pickle (to Ray workers),
    without the readers, which the receiving process opens again from their ids (paths or hub
    ids) through the installed format plugins, once per process."""

    def __init__(
        self,
        where: Mapping[str, Mapping[str, StoredTensor]],
        wanted: Mapping[str, Sequence[PlannedCheck]],
        readers: Mapping[str, CheckpointReader],
    ) -> None:
        self.where, self.wanted, self.readers = where, wanted, readers

    def open_group(
        self, name: str, memo: Mapping[Any, Any] | None
    ) -> tuple[TensorGroup, Sequence[PlannedCheck]]:
        """The name's group (starting from ``memo``) and the checks wanting it."""
        stored = self.where[name]
        loaded: dict[str, np.ndarray] = {}

        def load(rid: str) -> np.ndarray:
            if rid not in loaded:
                loaded[rid] = self.readers[rid].read(stored[rid].meta.name)
            return loaded[rid]

        group = TensorGroup(name, load, lambda rid: stored[rid].meta, self.readers, memo)
        return group, self.wanted[name]

    def release(self, name: str) -> None:
        """Drop the name's pages in every reader."""
        for rid, stored in self.where[name].items():
            self.readers[rid].release(stored.meta.name)

    def __getstate__(self) -> dict[str, Any]:
        return {"where": self.where, "wanted": self.wanted, "reader_ids": sorted(self.readers)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.where, self.wanted = state["where"], state["wanted"]
        self.readers = {rid: _reopen(rid) for rid in state["reader_ids"]}


_REOPENED: dict[str, CheckpointReader] = {}


def _reopen(rid: str) -> CheckpointReader:
    """The reader of ``rid`` in this process, opened on first use (see :class:`PassPlan`)."""
    if rid not in _REOPENED:
        from sparsecheck._manager import get_plugin_manager
        from sparsecheck.checkpoints._open import open_checkpoint

        _REOPENED[rid] = open_checkpoint(get_plugin_manager().hook, rid, Path.cwd())
    return _REOPENED[rid]


@dataclass
class _Outcome:
    """What a worker sends back for one name: the pickled memo entries (with the names of the
    shared-memory files of each entry's large buffers), timings and errors."""

    memo: list[tuple[bytes, list[str]]]
    seconds: list[float]
    errors: dict[int, BaseException]

    def memo_values(self) -> dict[Any, Any]:
        return dict(SharedBuffers.loads(data, shared) for data, shared in self.memo)


def prepare_names(
    plan: PassPlan, names: Sequence[str], shared: SharedBuffers | None = None
) -> list[_Outcome]:
    """Run the reducers' ``prepare`` for ``names`` (in a worker) and return what they memoized;
    with ``shared``, large arrays go through shared memory."""
    return [_prepare_one(plan, name, shared) for name in names]


def _prepare_one(plan: PassPlan, name: str, shared: SharedBuffers | None) -> _Outcome:
    group, items = plan.open_group(name, None)
    entry = Prepared(group, items).run()
    plan.release(name)
    memo = []
    for item in group.memoized.items():
        try:
            memo.append(shared.dumps(item) if shared else (pickle.dumps(item, pickle.HIGHEST_PROTOCOL), []))
        except Exception:  # the main process computes it again
            continue
    return _Outcome(memo, entry.seconds, {k: _portable(e) for k, e in entry.errors.items()})


def _portable(exc: BaseException) -> BaseException:
    """``exc``, or a RuntimeError saying the same when it cannot make the trip by pickle."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
