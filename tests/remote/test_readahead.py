"""The read-ahead: names fetched in order, concurrently, never too many tensors or bytes ahead."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sparsecheck.checkpoints import _readahead
from sparsecheck.checkpoints._readahead import ReadAhead


class _Recorder:
    """A fetch that takes a while and records how many fetched tensors wait unread."""

    def __init__(self, nbytes: dict[str, int]) -> None:
        self.nbytes = nbytes
        self.lock = threading.Lock()
        self.fetched: list[str] = []
        self.taken: set[str] = set()
        self.in_flight = self.most_in_flight = 0
        self.most_held_bytes = 0

    def fetch(self, name: str) -> np.ndarray:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(0.005)
        with self.lock:
            self.in_flight -= 1
            self.fetched.append(name)
            held = sum(self.nbytes[n] for n in self.fetched if n not in self.taken)
            self.most_held_bytes = max(self.most_held_bytes, held)
        return np.full(1, int(name[1:]))


def test_reads_ahead_concurrently_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"t{i}" for i in range(40)]
    nbytes = {name: 100 for name in names} | {"t20": 10_000}  # one tensor over the byte budget alone
    monkeypatch.setattr(_readahead, "AHEAD_BYTES", 450)
    recorder = _Recorder(nbytes)
    ahead = ReadAhead(names, nbytes, recorder.fetch)
    for name in names:
        assert ahead.take(name)[0] == int(name[1:])
        with recorder.lock:
            recorder.taken.add(name)
        ahead.drop(name)
    ahead.close()
    assert sorted(recorder.fetched) == sorted(names)  # each once
    assert recorder.most_in_flight > 1
    assert recorder.most_held_bytes <= 10_000 + 100  # the big one alone, or within the budget


def test_a_name_out_of_order_is_fetched_on_the_spot() -> None:
    names = ["t0", "t1", "t2"]
    recorder = _Recorder(dict.fromkeys(names, 1))
    ahead = ReadAhead(names[:2], dict.fromkeys(names, 1), recorder.fetch)
    assert ahead.take("t2")[0] == 2
    assert ahead.take("t0")[0] == 0
    ahead.close()
    assert sorted(recorder.fetched) == names
