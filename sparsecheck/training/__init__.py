"""Fine-tuning under sparsecheck: the public API of training backends.

Engines live in plugins (``plugins/sparsecheck-trl`` is the model: it imports sparsecheck only
through this module, ``sparsecheck`` and ``sparsecheck.errors``).  What any engine can reuse
lives here and imports torch only when used:

- the interface: :class:`TrainingBackend`, :class:`TrainRequest`, :class:`TrainResult`,
  :class:`SnapshotPolicy`, :class:`GeneratedDataset`, :data:`RewardFunction`;
- exact masking: :func:`read_masks` (a mask file), :func:`match_masks`, :class:`ExactMask`
  (keeps frozen entries bitwise equal through every optimizer step), :func:`checkpoint_violations`
  and :func:`exact_mask_metadata` (what a saved checkpoint kept, and the mask file metadata);
- snapshots: :class:`SnapshotRecorder`;
- outputs: :func:`write_folder` (a checkpoint folder, atomically) and :func:`write_text_atomic`;
- progress: :func:`current_progress`, the step's :class:`ProgressTask` (None when not shown);
- generated data: the arithmetic task and its rows in each TRL dataset shape, chat templates,
  on-policy preference pairs; :func:`quiet_hf` keeps transformers' logging out of reports.
"""

from __future__ import annotations

from sparsecheck._atomic import write_text_atomic
from sparsecheck._progress import Task as ProgressTask
from sparsecheck._progress import current as current_progress
from sparsecheck.training._api import (
    GeneratedDataset,
    RewardFunction,
    SnapshotPolicy,
    TrainingBackend,
    TrainRequest,
    TrainResult,
)
from sparsecheck.training._data import (
    PAIR_STYLES,
    Problem,
    arithmetic_problems,
    arithmetic_reward,
    off_style_pairs,
    preference_rows,
    prompt_rows,
    sft_rows,
    unpaired_rows,
)
from sparsecheck.training._folders import write_folder
from sparsecheck.training._masking import (
    CheckpointViolations,
    ExactMask,
    MaskStats,
    checkpoint_violations,
    exact_mask_metadata,
    match_masks,
    read_masks,
)
from sparsecheck.training._onpolicy import has_chat_template, preference_pairs, prompt_text
from sparsecheck.training._quiet import quiet_hf
from sparsecheck.training._snapshots import RecordedRun, SnapshotRecorder

__all__ = [
    "PAIR_STYLES",
    "CheckpointViolations",
    "ExactMask",
    "GeneratedDataset",
    "MaskStats",
    "Problem",
    "ProgressTask",
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
    "current_progress",
    "exact_mask_metadata",
    "has_chat_template",
    "match_masks",
    "off_style_pairs",
    "preference_pairs",
    "preference_rows",
    "prompt_rows",
    "prompt_text",
    "quiet_hf",
    "read_masks",
    "sft_rows",
    "unpaired_rows",
    "write_folder",
    "write_text_atomic",
]
