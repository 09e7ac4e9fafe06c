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
import signal
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from sparsecheck.checkpoints._watch import first_changed
from sparsecheck.engine._passplan import PassPlan, Prepared, _Outcome, prepare_names
from sparsecheck.engine._shared import SharedBuffers
from sparsecheck.errors import SparsecheckError

if TYPE_CHECKING:
    from concurrent.futures import Future


#: Workers need ``fork`` (they inherit the open maps and reducers); elsewhere names go one by one.
CAN_FORK = sys.platform == "linux"
#: Tasks sent ahead per worker; a task is consecutive names of at least TASK_BYTES together
#: (each task costs ~1 ms of queue and pickling work in three processes: 4 MiB tasks made a warm
#: 336M-parameter `sparsecheck diff` pass ~25% slower than 16 MiB ones, measured side by side).
AHEAD_PER_WORKER = 2
TASK_BYTES = 1 << 24


def available_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_JOB: PassPlan | None = None
_SHARED: SharedBuffers | None = None


def _start_worker() -> None:
    """Leave Ctrl-C to the main process (it stops the pass); one torch thread per worker, as
    torch's DataLoader does in its forked workers: the workers are the parallelism, and the
    parent's OpenMP pool does not survive a fork."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _prepare_in_worker(names: Sequence[str]) -> list[_Outcome]:
    assert _JOB is not None, "workers are forked from a process with a job"
    return prepare_names(_JOB, names, _SHARED)


def _tasks(names: Iterable[str], nbytes: Mapping[str, int], least: int = TASK_BYTES) -> Iterator[list[str]]:
    """Consecutive names, grouped until each group stores at least ``least`` bytes."""
    task: list[str] = []
    size = 0
    for name in names:
        task.append(name)
        size += nbytes[name]
        if size >= least:
            yield task
            task, size = [], 0
    if task:
        yield task


def prepared(
    names: Iterable[str],
    nbytes: Mapping[str, int],
    plan: PassPlan,
    workers: int | None,
    executor: str = "local",
) -> Iterator[Prepared]:
    """Yield each name's :class:`Prepared`, in order; with ``workers`` > 1 prepared ahead in
    that many worker processes, or with ``executor="ray"`` as Ray tasks (``nbytes``: each
    name's stored bytes)."""
    if executor == "ray":
        from sparsecheck.engine._ray import ray_pool

        with ray_pool(plan, workers) as (slots, submit, broken):
            yield from _in_order(plan, _tasks(names, nbytes, _ray_task_bytes()), submit, slots, broken)
        return
    if workers is None or workers <= 1 or not CAN_FORK:
        for name in names:
            yield Prepared(*plan.open_group(name, None))
        return
    import multiprocessing  # here: a pass in one process never pays for importing these
    from concurrent.futures import ProcessPoolExecutor

    global _JOB, _SHARED
    _JOB = plan
    _SHARED = SharedBuffers() if SharedBuffers.available() else None
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker)
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns when a process with threads (torch's, say) forks; the workers
            # run numpy and one torch thread (see _start_worker), and the pool forks them now.
            warnings.filterwarnings("ignore", r"This process .* is multi-threaded", DeprecationWarning)
            pool.submit(int).result()
        tasks = _tasks(names, nbytes)
        yield from _in_order(
            plan, tasks, lambda task: pool.submit(_prepare_in_worker, task), workers, _broken
        )
    finally:
        _JOB = None
        pool.shutdown(wait=True, cancel_futures=True)  # tasks under way finish, queued ones go
        if _SHARED is not None:
            _SHARED.remove_leftovers()
            _SHARED = None


def _ray_task_bytes() -> int:
    from sparsecheck.engine._ray import TASK_BYTES as RAY_TASK_BYTES

    return RAY_TASK_BYTES


def _in_order(
    plan: PassPlan,
    pending: Iterator[list[str]],
    submit: Callable[[list[str]], Future[list[_Outcome]]],
    slots: int,
    broken: Callable[[BaseException], str | None],
) -> Iterator[Prepared]:
    """Keep ``slots`` × :data:`AHEAD_PER_WORKER` tasks submitted; yield their names in order.
    ``broken(exc)`` says why a task's worker died (None: ``exc`` is not such an error)."""
    queue: deque[tuple[list[str], Future[list[_Outcome]]]] = deque()
    task: list[str] = []
    try:
        while True:
            while len(queue) < slots * AHEAD_PER_WORKER:
                coming = next(pending, None)
                if coming is None:
                    break
                queue.append((coming, submit(coming)))
            if not queue:
                return
            task, future = queue.popleft()
            outcomes = future.result()
            for name, outcome in zip(task, outcomes, strict=True):
                entry = Prepared(*plan.open_group(name, outcome.memo_values()))
                entry.seconds, entry.errors = outcome.seconds, outcome.errors
                yield entry
    except Exception as exc:  # from result(), or from submit() once the pool is broken
        why = broken(exc)
        if why is None:
            raise
        changed = first_changed()
        if changed is not None:  # a mapped read of a file that shrank killed the worker
            raise changed from None
        where = f" preparing tensor {task[0]!r}" if task else ""
        raise SparsecheckError(
            f"a worker process died{where} ({why}); run again with --workers 1"
        ) from None


def _broken(exc: BaseException) -> str | None:
    from concurrent.futures.process import BrokenProcessPool

    return "killed, or out of memory?" if isinstance(exc, BrokenProcessPool) else None
