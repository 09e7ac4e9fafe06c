"""What a worker's packed masks cost the main process: in the pickle, or through /dev/shm.

A forked worker (as ``--workers`` forks them) sends back packed masks, as the read pass's
workers do for every tensor: ``--mib`` MiB in tasks of ``--task-mib`` MiB, once with each array
inside the pickle (how results travelled before) and once through
:class:`sparsecheck.engine._shared.SharedBuffers`.  It prints the main process's CPU seconds per
GiB received (the main process reduces every tensor in order, so at 16+ workers this is what
could become the bottleneck), its wall time, and the ratio.  Usage::

    python benchmarks/bench_transport.py [--mib 2048] [--task-mib 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from sparsecheck.engine._shared import SharedBuffers

_SHARED: SharedBuffers | None = None


def _task(nbytes: int, seed: int) -> tuple[bytes, list[str]]:
    packed = np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)
    value = (("compare", "base", "tuned"), {"packed": packed, "changed": int(seed)})
    if _SHARED is None:
        import pickle

        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL), []
    return _SHARED.dumps(value)


def receive(total: int, task: int, shared: bool) -> tuple[float, float]:
    """Main-process CPU seconds and wall seconds to receive ``total`` bytes of masks."""
    global _SHARED
    _SHARED = SharedBuffers() if shared else None
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    try:
        pool.submit(int).result()
        futures = [pool.submit(_task, task, i) for i in range(total // task)]
        cpu, wall = time.process_time(), time.perf_counter()
        checksum = 0
        for future in futures:
            data, names = future.result()
            value = SharedBuffers.loads(data, names)
            checksum += int(value[1]["packed"][-1])
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        pool.shutdown()
        if _SHARED is not None:
            _SHARED.remove_leftovers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=2048, help="MiB of packed masks in all")
    parser.add_argument("--task-mib", type=int, default=16, help="MiB per task")
    args = parser.parse_args()
    total, task = args.mib << 20, args.task_mib << 20
    gib = total / (1 << 30)
    cpus = os.cpu_count()
    print(f"{args.mib} MiB of packed masks from one forked worker, {args.task_mib} MiB per task, {cpus} CPUs")
    rows = {}
    for name, shared in (("in the pickle", False), ("/dev/shm", True)):
        cpu, wall = receive(total, task, shared)
        rows[name] = cpu
        print(f"  {name:14} main process {cpu / gib:6.3f} CPU s per GiB   wall {wall:6.2f} s")
    ratio = rows["/dev/shm"] / rows["in the pickle"]
    print(f"  /dev/shm / in the pickle: {ratio:.2f}x of the main process's CPU")


if __name__ == "__main__":
    main()
