"""The training backend interface: engines that fine-tune a model, optionally under a mask."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class TrainRequest:
    """One fine-tuning run: what to train, on what, how, and where to write."""

    algorithm: str
    base: Path
    output: Path
    dataset: Any
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    mask: Path | None = None
    seed: int = 0
    device: str = "auto"


@dataclass
class TrainResult:
    """What a run wrote: the final checkpoint, its snapshots and its log."""

    checkpoint: Path
    snapshots: list[Path] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    mask_violations: int | None = None


class TrainingBackend(ABC):
    """A training engine registered by ``sparsecheck_add_backends``."""

    name: ClassVar[str]
    algorithms: ClassVar[tuple[str, ...]]

    @abstractmethod
    def train(self, request: TrainRequest) -> TrainResult:
        """Run ``request`` and return where its outputs are."""
