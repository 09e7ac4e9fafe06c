"""Fixtures for the checkpoint layer: a plugin manager with only the checkpoint plugins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest
import torch

from sparsecheck import hookspec
from sparsecheck.checkpoints import _formats, _hub
from sparsecheck.checkpoints._open import open_checkpoint
from sparsecheck.checkpoints._reader import CheckpointReader


@pytest.fixture
def hook() -> Any:
    pm = pluggy.PluginManager("sparsecheck")
    pm.add_hookspecs(hookspec)
    pm.register(_formats, name="formats")
    pm.register(_hub, name="hub")
    return pm.hook


@pytest.fixture
def open_ckpt(hook: Any, tmp_path: Path) -> Iterator[Callable[[Path | str], CheckpointReader]]:
    """Open a checkpoint through the hook; every reader opened is closed after the test."""
    opened: list[CheckpointReader] = []

    def opener(source: Path | str) -> CheckpointReader:
        reader = open_checkpoint(hook, str(source), tmp_path)
        opened.append(reader)
        return reader

    yield opener
    for reader in opened:
        reader.close()


def _stored_array(tensor: torch.Tensor) -> np.ndarray:
    """What a reader should return for ``tensor``: its values, bits for bfloat16/float8."""
    if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
        tensor = tensor.view(torch.uint16 if tensor.element_size() == 2 else torch.uint8)
    return tensor.contiguous().numpy()


@pytest.fixture
def stored_array() -> Callable[[torch.Tensor], np.ndarray]:
    return _stored_array
