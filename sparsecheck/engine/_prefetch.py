"""Reducers' ``prepare`` for the coming tensor names, in forked worker processes.

The read pass walks names in storage order in the main process.  With several workers, each
coming name goes to a worker process (a fork, so it shares the open checkpoint maps and the
reducers as they were); the worker maps the name's tensors, runs every wanting reducer's
``prepare``, drops the pages and sends back what those put in ``group.memo``.  The main process
starts the name's group from that memo, so its ``update`` calls, in order, only record results.
Processes, not threads: the per-chunk numpy calls are short enough that threads spend their
time waiting for the GIL (measured: no speedup on two cores).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparsecheck.checkpoints._watch import first_changed
from sparsecheck.errors import SparsecheckError
from sparsecheck.metrics._api import TensorGroup

if TYPE_CHECKING:
    from concurrent.futures import Future

    from sparsecheck.engine._plan import PlannedCheck

#: ``open_group(name, memo)``: the name's group (starting from ``memo``) and the checks wanting it.
OpenGroup = Callable[[str, "Mapping[Any, Any] | None"], "tuple[TensorGroup, Sequence[PlannedCheck]]"]

#: Workers need ``fork`` (they inherit the open maps and reducers); elsewhere names go one by one.
CAN_FORK = sys.platform == "linux"
#: Tasks sent ahead per worker; a task is consecutive names of at least TASK_BYTES together.
AHEAD_PER_WORKER = 2
TASK_BYTES = 1 << 22


def available_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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


@dataclass
class _Job:
    """What the workers inherit at fork."""

    open_group: OpenGroup
    release: Callable[[str], None]


_JOB: _Job | None = None


@dataclass
class _Outcome:
    """What a worker sends back for one name: the pickled memo entries, timings and errors."""

    memo: list[bytes]
    seconds: list[float]
    errors: dict[int, BaseException]

    def memo_values(self) -> dict[Any, Any]:
        return dict(pickle.loads(entry) for entry in self.memo)


def _start_worker() -> None:
    """Leave Ctrl-C to the main process (it stops the pass); one torch thread per worker, as
    torch's DataLoader does in its forked workers: the workers are the parallelism, and the
    parent's OpenMP pool does not survive a fork."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _prepare_in_worker(names: Sequence[str]) -> list[_Outcome]:
    return [_prepare_one(name) for name in names]


def _prepare_one(name: str) -> _Outcome:
    assert _JOB is not None, "workers are forked from a process with a job"
    group, items = _JOB.open_group(name, None)
    entry = Prepared(group, items).run()
    _JOB.release(name)
    memo = []
    for item in group.memoized.items():
        try:
            memo.append(pickle.dumps(item, pickle.HIGHEST_PROTOCOL))
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


def _tasks(names: Iterable[str], nbytes: Mapping[str, int]) -> Iterator[list[str]]:
    """Consecutive names, grouped until each group stores at least :data:`TASK_BYTES`."""
    task: list[str] = []
    size = 0
    for name in names:
        task.append(name)
        size += nbytes[name]
        if size >= TASK_BYTES:
            yield task
            task, size = [], 0
    if task:
        yield task


def prepared(
    names: Iterable[str],
    nbytes: Mapping[str, int],
    open_group: OpenGroup,
    release: Callable[[str], None],
    workers: int,
) -> Iterator[Prepared]:
    """Yield each name's :class:`Prepared`, in order; with ``workers`` > 1 prepared ahead in
    that many worker processes (``nbytes``: each name's stored bytes; ``release(name)`` drops
    a name's pages in a worker)."""
    if workers <= 1 or not CAN_FORK:
        for name in names:
            yield Prepared(*open_group(name, None))
        return
    import multiprocessing  # here: a pass in one process never pays for importing these
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    global _JOB
    _JOB = _Job(open_group, release)
    pending = _tasks(names, nbytes)
    queue: deque[tuple[list[str], Future[list[_Outcome]]]] = deque()
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker)
    task: list[str] = []
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with threads (torch's, say) forks; the workers
            # run numpy and one torch thread (see _start_worker), and the pool forks them now.
            warnings.filterwarnings("ignore", r"This process .* is multi-threaded", DeprecationWarning)
            pool.submit(int).result()
        while True:
            while len(queue) < workers * AHEAD_PER_WORKER:
                coming = next(pending, None)
                if coming is None:
                    break
                queue.append((coming, pool.submit(_prepare_in_worker, coming)))
            if not queue:
                return
            task, future = queue.popleft()
            outcomes = future.result()
            for name, outcome in zip(task, outcomes, strict=True):
                entry = Prepared(*open_group(name, outcome.memo_values()))
                entry.seconds, entry.errors = outcome.seconds, outcome.errors
                yield entry
    except BrokenProcessPool:  # from result() or from submit() once the pool is broken
        changed = first_changed()
        if changed is not None:  # a mapped read of a file that shrank killed the worker
            raise changed from None
        where = f" preparing tensor {task[0]!r}" if task else ""
        raise SparsecheckError(
            f"a worker process died{where} (killed, or out of memory?); run again with --workers 1"
        ) from None
    finally:
        _JOB = None
        pool.shutdown(wait=True, cancel_futures=True)  # tasks under way finish, queued ones go
