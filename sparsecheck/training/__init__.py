"""Fine-tuning under sparsecheck: the backend interface, exact masking, snapshots, generated data.

Engines live in plugins (``plugins/sparsecheck-trl``); what any engine can reuse lives here and
imports torch only when used.
"""

from __future__ import annotations

from sparsecheck.training._api import (
    GeneratedDataset,
    RewardFunction,
    SnapshotPolicy,
    TrainingBackend,
    TrainRequest,
    TrainResult,
)
from sparsecheck.training._data import Problem, arithmetic_problems, arithmetic_reward
from sparsecheck.training._masking import (
    CheckpointViolations,
    ExactMask,
    MaskStats,
    checkpoint_violations,
    read_masks,
)
from sparsecheck.training._snapshots import RecordedRun, SnapshotRecorder

__all__ = [
    "CheckpointViolations",
    "ExactMask",
    "GeneratedDataset",
    "MaskStats",
    "Problem",
    "RecordedRun",
    "RewardFunction",
    "SnapshotPolicy",
    "SnapshotRecorder",
    "TrainRequest",
    "TrainResult",
    "TrainingBackend",
    "arithmetic_problems",
    "arithmetic_reward",
    "checkpoint_violations",
    "read_masks",
]
