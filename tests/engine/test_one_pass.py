"""One read pass feeds every check, and the result cache skips reading entirely."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsecheck import CheckpointReader, StoredTensor, hookimpl
from sparsecheck.checkpoints._formats import open_local
from sparsecheck.testing import planted_pair, run_spec

FIVE_CHECKS = """
version: 1
checkpoints: {{base: "{base}", tuned: "{tuned}"}}
checks:
  - {{id: atol, metric: update_sparsity, args: {{base: base, tuned: tuned}}}}
  - {{id: exact, metric: update_sparsity, args: {{base: base, tuned: tuned, policy: exact}}}}
  - {{id: rtol, metric: update_sparsity, args: {{base: base, tuned: tuned, policy: rtol}}}}
  - {{id: per-layer, metric: update_sparsity, args: {{base: base, tuned: tuned}}, per: layer,
     expect: {{ge: 0}}}}
  - {{id: norms, metric: update_sparsity, args: {{base: base, tuned: tuned, include: ["*norm*"]}}}}
"""


class CountingReader(CheckpointReader):
    """Wraps a real reader and counts ``read`` calls per tensor name."""

    def __init__(self, inner: CheckpointReader, counts: Counter[tuple[str, str]]) -> None:
        super().__init__(inner.source, inner.path)
        self.format = inner.format
        self.inner, self.counts = inner, counts

    def tensors(self) -> Mapping[str, StoredTensor]:
        return self.inner.tensors()

    def read(self, name: str) -> np.ndarray:
        self.counts[(str(self.path), name)] += 1
        return self.inner.read(name)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()


class ReadCounter:
    """A plugin that opens local checkpoints with counting readers."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    @hookimpl(tryfirst=True)
    def sparsecheck_open_checkpoint(self, source: str, path: Path | None) -> CheckpointReader | None:
        return None if path is None else CountingReader(open_local(source, path), self.counts)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    pair = planted_pair(tmp_path / "ckpt", fraction=0.25)
    path = tmp_path / "five.sparsecheck.yaml"
    path.write_text(FIVE_CHECKS.format(base=pair.base, tuned=pair.tuned), encoding="utf-8")
    return path


def run(spec: Path, counter: ReadCounter, **options: Any) -> list[str]:
    """Run ``spec`` with one worker, so that every read happens in this process and is counted
    (test_workers.py checks that worker processes give the same results)."""
    options = {"cache_dir": spec.parent / "cache", "workers": 1, **options}
    session = run_spec(spec, plugins=[counter], options=options)
    return [o.status.value for o in session.outcomes]


def test_five_checks_read_each_tensor_once(spec: Path) -> None:
    counter = ReadCounter()
    assert run(spec, counter, no_cache=True) == ["PASS"] * 5
    tensors = {name for _, name in counter.counts}
    assert len(tensors) > 10
    assert len(counter.counts) == 2 * len(tensors)  # both checkpoints, every tensor
    assert set(counter.counts.values()) == {1}  # each read exactly once for five checks


def test_unchanged_suite_reruns_from_cache_without_reading(spec: Path) -> None:
    first = ReadCounter()
    assert run(spec, first) == ["PASS"] * 5
    assert first.counts
    second = ReadCounter()
    assert run(spec, second) == ["PASS"] * 5
    assert not second.counts
    third = ReadCounter()
    run(spec, third, no_cache=True)
    assert third.counts == first.counts


def test_touched_checkpoint_is_read_again(spec: Path, tmp_path: Path) -> None:
    run(spec, ReadCounter())
    weights = next((tmp_path / "ckpt" / "tuned").glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = ReadCounter()
    run(spec, again)
    assert again.counts
