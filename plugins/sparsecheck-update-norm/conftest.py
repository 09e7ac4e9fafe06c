"""Checkpoints for this package's tests and for its example spec under pytest.

pytest collects ``specs/update_norm.sparsecheck.yaml`` (sparsecheck's pytest plugin) when it
runs over this folder; the spec reads its checkpoints from ``UPDATE_NORM_CKPTS``, so when that
is unset a small planted pair is written to a temporary folder for the session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]
CHECKPOINTS_ENV = "UPDATE_NORM_CKPTS"
#: Planted step, times 1 + |w|: small against the weights (the pair's relative norm is about 0.005).
SMALL_UPDATE = 1e-3
_made: list[Path] = []


def write_example_pair(root: Path, magnitude: float = SMALL_UPDATE) -> tuple[State, State]:
    """Write ``root/base`` and ``root/tuned`` (bf16; 30% of each non-norm tensor moved by about
    ``magnitude``, norms untouched) and return the base and tuned state dicts."""
    base = tiny_llama_state_dict(dtype=torch.bfloat16, seed=21)
    fractions = {name: 0.0 if "norm" in name else 0.3 for name in base}
    tuned, _ = plant_changes(base, fractions, seed=22, magnitude=magnitude)
    write_checkpoint(root / "base", base)
    write_checkpoint(root / "tuned", tuned)
    return base, tuned


@pytest.fixture
def example_pair(tmp_path: Path) -> Callable[..., tuple[State, State]]:
    """``example_pair(root, magnitude)``: :func:`write_example_pair` under ``tmp_path / root``."""

    def write(root: str = "ckpts", magnitude: float = SMALL_UPDATE) -> tuple[State, State]:
        return write_example_pair(tmp_path / root, magnitude)

    return write


def pytest_configure(config: pytest.Config) -> None:
    if CHECKPOINTS_ENV not in os.environ:
        root = Path(tempfile.mkdtemp(prefix="update-norm-"))
        write_example_pair(root)
        os.environ[CHECKPOINTS_ENV] = str(root)
        _made.append(root)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _made:
        root = _made.pop()
        if os.environ.get(CHECKPOINTS_ENV) == str(root):
            del os.environ[CHECKPOINTS_ENV]
        shutil.rmtree(root, ignore_errors=True)
