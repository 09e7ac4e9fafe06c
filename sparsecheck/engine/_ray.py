"""Reducers' ``prepare`` as Ray tasks (``--executor ray``).

The driver (the ``sparsecheck`` process) connects to the Ray cluster at ``RAY_ADDRESS`` (or
starts a local instance for the run), puts the pass plan (:class:`~._passplan.PassPlan`: where
each tensor is stored and the checks wanting it, reducers as they were before the pass) in the
object store once, and sends batches of consecutive tensor names as tasks.  Each task opens the
checkpoints again by path or hub id (so every node must be able to read them: a shared
filesystem, or object storage), runs the reducers' ``prepare`` and returns what they memoized;
the driver hands the names to ``update`` in storage order, as with local workers, so results
equal one process's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from sparsecheck.engine._passplan import PassPlan, prepare_names
from sparsecheck.errors import UsageError

#: A task is consecutive names storing at least this many bytes together (a task costs Ray a
#: few milliseconds, so tasks are larger than local workers').
TASK_BYTES = 1 << 26


@contextmanager
def ray_pool(
    plan: PassPlan, workers: int | None
) -> Iterator[tuple[int, Callable[[list[str]], Future[Any]], Callable[[BaseException], str | None]]]:
    """(tasks in flight, ``submit(names)``, ``broken(exc)``) on the Ray cluster; ``workers``: tasks
    in flight (None: the cluster's CPUs)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'sparsecheck[ray]'") from None
    started = not ray.is_initialized()
    if started:
        # ray.init connects to RAY_ADDRESS when it is set, else starts a local instance.
        ray.init(
            logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False, configure_logging=False
        )
    try:
        resources: Callable[[], dict[str, float]] = ray.cluster_resources
        slots = workers or max(1, int(resources().get("CPU", 1)))
        plan_ref = ray.put(plan)
        task = ray.remote(num_cpus=1, max_retries=0)(prepare_names)

        def submit(names: list[str]) -> Future[Any]:
            future: Future[Any] = task.remote(plan_ref, names).future()
            return future

        def broken(exc: BaseException) -> str | None:
            if not isinstance(exc, ray.exceptions.RayError):
                return None
            lines = str(exc).strip().splitlines()
            return f"Ray: {lines[-1][:200]}" if lines else f"Ray: {type(exc).__name__}"

        yield slots, submit, broken
    finally:
        if started:
            ray.shutdown()
