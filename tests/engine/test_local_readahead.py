"""The read-ahead asks the kernel for the coming tensors' bytes in order: all of a pass that fits in
half the RAM; for a larger one never more than its window ahead of the pass, handing finished bytes
back.  What the command's early read-ahead asked for is not asked again."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from sparsecheck import _early, hookimpl
from sparsecheck._config import ReadProgress
from sparsecheck.engine import _readahead
from sparsecheck.engine._readahead import ReadAhead
from sparsecheck.testing import run_spec, tiny_llama_state_dict, write_checkpoint

pytestmark = pytest.mark.skipif(not _readahead.CAN_ADVISE, reason="no posix_fadvise here")


def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        with lock:
            calls.append((offset, length, advice))

    monkeypatch.setattr(os, "posix_fadvise", advise)
    return calls


def wait_for(condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def willneed(calls: list[tuple[int, int, int]]) -> list[int]:
    return [offset for offset, _, advice in calls if advice == os.POSIX_FADV_WILLNEED]


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    file = tmp_path / "shard"
    file.write_bytes(b"\0" * 2000)
    return file


def asked_before_the_pass(
    shard: Path, monkeypatch: pytest.MonkeyPatch, drop_behind: bool, at_least: int
) -> list[int]:
    """Offsets asked for (WILLNEED) over 20 names of 100 bytes (window 250) while the pass has not
    finished any: after ``at_least`` asks and a pause for any more."""
    calls = recorded(monkeypatch)
    monkeypatch.setattr(_readahead, "WINDOW", 250)
    ahead = ReadAhead([[(shard, 100 * i, 100)] for i in range(20)], drop_behind=drop_behind)
    try:
        wait_for(lambda: len(calls) >= at_least)
        time.sleep(0.05)
    finally:
        ahead.close()
    return willneed(calls)


def test_a_pass_that_fits_in_memory_is_asked_for_whole(shard: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = asked_before_the_pass(shard, monkeypatch, drop_behind=False, at_least=20)
    assert asked == [100 * i for i in range(20)]  # no waiting for the pass


def test_a_larger_pass_stays_within_its_window_in_order(shard: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = recorded(monkeypatch)
    monkeypatch.setattr(_readahead, "WINDOW", 250)
    spans = [[(shard, 100 * i, 100)] for i in range(20)]  # 20 names of 100 bytes
    ahead = ReadAhead(spans, drop_behind=True)
    try:
        wait_for(lambda: len(calls) >= 3)
        time.sleep(0.05)
        # asks while at most WINDOW bytes are outstanding: names 0..2 (then 300 > 250)
        assert willneed(calls) == [0, 100, 200]
        ahead.advance(5)  # the pass went past names 0..4
        wait_for(lambda: len(willneed(calls)) >= 6)
        time.sleep(0.05)
        assert willneed(calls) == [0, 100, 200, 500, 600, 700]  # names 3 and 4 were passed already
        dropped = [c[0] for c in calls if c[2] == os.POSIX_FADV_DONTNEED]
        assert dropped == [0, 100, 200, 300, 400]
        ahead.advance(10)
        wait_for(lambda: len(willneed(calls)) >= 9)
        time.sleep(0.05)
    finally:
        ahead.close()
    assert willneed(calls)[6:] == [1000, 1100, 1200]


def test_what_the_early_read_ahead_asked_for_is_skipped_and_not_counted(
    shard: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_early.ADVISED, os.path.realpath(shard), 500)
    asked = asked_before_the_pass(shard, monkeypatch, drop_behind=True, at_least=3)
    assert asked == [500, 600, 700]  # names 0..4 were asked early; the window starts after


def test_a_long_span_is_asked_for_in_pieces_the_kernel_honours(
    shard: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux reads at most max(read_ahead_kb, max_sectors_kb) per WILLNEED and drops the rest."""
    calls = recorded(monkeypatch)
    monkeypatch.setitem(_early._advice_bytes, shard.stat().st_dev, 256)
    fd = os.open(shard, os.O_RDONLY)
    try:
        _early.will_need(fd, 100, 1000)
    finally:
        os.close(fd)
    need = os.POSIX_FADV_WILLNEED
    assert calls == [(100, 256, need), (356, 256, need), (612, 256, need), (868, 232, need)]


def tensor_spans(folder: Path) -> set[tuple[str, int, int]]:
    """(file, absolute offset, bytes) of every tensor stored in ``folder``'s safetensors files."""
    spans = set()
    for file in folder.glob("*.safetensors"):
        data = file.read_bytes()
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        for name, entry in header.items():
            if name != "__metadata__":
                start, end = entry["data_offsets"]
                spans.add((file.name, 8 + size + start, end - start))
    return spans


class Totals:
    total = 0

    @hookimpl
    def sparsecheck_read_progress(self, progress: ReadProgress) -> None:
        self.total = progress.bytes_total


def test_a_pass_over_safetensors_asks_for_every_byte_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = recorded(monkeypatch)
    state = tiny_llama_state_dict(hidden=32, intermediate=64, vocab=64, seed=1)
    write_checkpoint(tmp_path / "a", state)
    write_checkpoint(tmp_path / "b", state)
    spec = tmp_path / "s.sparsecheck.yaml"
    spec.write_text(
        "version: 1\ncheckpoints: {a: a, b: b}\nchecks:\n"
        "  - {id: s, metric: update_sparsity, args: {base: a, tuned: b}}\n"
    )
    totals = Totals()
    (outcome,) = run_spec(spec, plugins=[totals], options={"no_cache": True, "workers": 1}).outcomes
    assert outcome.status.value == "PASS"
    # The thread skips names the pass is already past (how many depends on timing): whatever it
    # asked is a stored tensor's exact byte range, each at most once, within what the pass read.
    stored = tensor_spans(tmp_path / "a") | tensor_spans(tmp_path / "b")
    asked = [(offset, length) for offset, length, advice in calls if advice == os.POSIX_FADV_WILLNEED]
    assert set(asked) <= {(offset, length) for _, offset, length in stored}
    assert sum(length for _, length in asked) <= totals.total
    assert not any(advice == os.POSIX_FADV_DONTNEED for *_, advice in calls)  # a pass far smaller than RAM
