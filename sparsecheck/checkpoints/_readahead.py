"""Fetching remote tensors ahead of the read pass, in threads, with bounded memory.

The pass reads names in an order known up front (:meth:`CheckpointReader.will_read`).  A
:class:`ReadAhead` keeps fetching the coming names in a thread pool while the pass compares
the current one, never holding more than :data:`AHEAD_TENSORS` fetched-but-unread tensors or
:data:`AHEAD_BYTES` of them (one tensor is always allowed, however large).  A name the pass
asks for out of order is fetched on the spot.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

#: Fetched-but-unread tensors held at most, and their bytes at most.
AHEAD_TENSORS = 8
AHEAD_BYTES = 256 << 20


class ReadAhead:
    """Fetches ``names`` in order with ``fetch(name)``, ahead of :meth:`take`."""

    def __init__(
        self, names: Sequence[str], nbytes: Mapping[str, int], fetch: Callable[[str], np.ndarray]
    ) -> None:
        self._coming = deque(names)
        self._nbytes = nbytes
        self._fetch = fetch
        self._pending: dict[str, Future[np.ndarray]] = {}
        self._held = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(AHEAD_TENSORS, thread_name_prefix="sparsecheck-read")
        self._top_up()

    def _top_up(self) -> None:
        with self._lock:
            while self._coming and len(self._pending) < AHEAD_TENSORS:
                name = self._coming[0]
                size = self._nbytes[name]
                if self._pending and self._held + size > AHEAD_BYTES:
                    break
                self._coming.popleft()
                if name not in self._pending:
                    self._held += size
                    self._pending[name] = self._pool.submit(self._fetch, name)

    def take(self, name: str) -> np.ndarray:
        """``name``'s data: fetched ahead when it was coming, else fetched now."""
        with self._lock:
            future = self._pending.pop(name, None)
            if future is not None:
                self._held -= self._nbytes[name]
        if future is None:
            return self._fetch(name)
        try:
            return future.result()
        finally:
            self._top_up()

    def drop(self, name: str) -> None:
        """Forget ``name`` (the pass is done with it), fetched or not."""
        with self._lock:
            future = self._pending.pop(name, None)
            if future is not None:
                self._held -= self._nbytes[name]
                future.cancel()
        if future is not None:
            self._top_up()

    def close(self) -> None:
        with self._lock:
            self._coming.clear()
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
