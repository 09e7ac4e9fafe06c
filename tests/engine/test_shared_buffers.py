"""Large arrays come back from worker processes through /dev/shm: equal values, nothing left behind."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from sparsecheck.engine import _shared
from sparsecheck.engine._shared import SharedBuffers

pytestmark = pytest.mark.skipif(not SharedBuffers.available(), reason="no writable /dev/shm here")


def ours(shared: SharedBuffers) -> list[str]:
    return sorted(p.name for p in _shared.FOLDER.glob(f"{shared.prefix}*"))


def test_large_arrays_travel_in_files_and_come_back_equal_and_writable() -> None:
    shared = SharedBuffers()
    large = np.arange(_shared.LARGE // 8 + 5, dtype=np.int64)
    small = np.arange(10, dtype=np.uint8)
    data, names = shared.dumps({"large": large, "small": small, "text": "x"})
    assert len(names) == 1 and ours(shared) == names  # only the large array went out of band
    assert len(data) < _shared.LARGE
    back = SharedBuffers.loads(data, names)
    assert ours(shared) == []  # mapped, then its name removed
    assert np.array_equal(back["large"], large) and np.array_equal(back["small"], small)
    back["large"][0] = -1  # copy-on-write: the main process may update what it receives
    assert back["large"][0] == -1


def test_a_full_dev_shm_sends_the_array_in_band(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    shared = SharedBuffers()
    large = np.ones(_shared.LARGE, dtype=np.uint8)
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full)
        data, names = shared.dumps(large)
    assert names == [] and ours(shared) == []
    assert np.array_equal(SharedBuffers.loads(data, names), large)


def test_files_never_read_are_removed_when_the_pass_ends() -> None:
    shared = SharedBuffers()
    _, names = shared.dumps([np.zeros(_shared.LARGE, dtype=np.uint8) for _ in range(2)])
    assert len(names) == 2 and ours(shared) == sorted(names)
    shared.remove_leftovers()
    assert ours(shared) == []
