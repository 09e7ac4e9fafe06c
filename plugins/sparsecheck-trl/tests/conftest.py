"""Fixtures of the TRL backend tests: offline, one tiny tied Llama for the whole session.

Requires the package to be installed (``pip install -e plugins/sparsecheck-trl``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparsecheck.training._tiny import write_tiny_causal_lm

#: Short runs that still move the weights: a large learning rate on 4-row batches.
FAST = {"lr": 0.05, "steps": 2, "batch_size": 4, "max_length": 64}


@pytest.fixture(scope="session", autouse=True)
def offline() -> Iterator[None]:
    """No hub access (everything is local), and TRL's experimental-import notes silenced."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 32, tied embeddings) with a WordLevel tokenizer, fp32."""
    return write_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture
def fast() -> dict[str, Any]:
    """Hyperparameters of a short run that still moves the weights (a test may change them)."""
    return dict(FAST)
