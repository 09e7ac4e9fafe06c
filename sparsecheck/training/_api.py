"""The training backend interface: engines that fine-tune a model, optionally under a mask."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

#: A reward function in TRL's form: ``f(prompts=..., completions=..., **dataset_columns) -> scores``.
RewardFunction = Callable[..., list[float]]


@dataclass(frozen=True)
class GeneratedDataset:
    """A dataset sparsecheck generates (``sparsecheck.training._data``) instead of a loaded one.

    ``name`` is ``"arithmetic"``: ``size`` word problems drawn with ``seed``.  Preference
    algorithms sample ``samples`` completions per prompt from the base model (at most
    ``max_new_tokens`` tokens, ``temperature``) and rank them by the answer reward;
    ``pair_style`` ``off`` rewrites each of those pairs in the SFT data's style, which the model
    does not use (the same problems, the same wrong answers: off-policy pairs, as many).
    """

    name: str = "arithmetic"
    size: int = 64
    seed: int = 0
    samples: int = 4
    max_new_tokens: int = 64
    temperature: float = 1.0
    pair_style: str = "own"


@dataclass(frozen=True)
class SnapshotPolicy:
    """What a run records along the way for transient analysis.

    Every ``every`` optimizer steps the ever-changed mask (entries that differ from the base at
    some recorded step) is updated; with ``full`` the model is also saved as
    ``checkpoint-<step>/`` (the final step is always recorded).
    """

    every: int = 1
    full: bool = False


@dataclass(frozen=True)
class TrainRequest:
    """One fine-tuning run: what to train, on what, how, and where to write.

    ``dataset`` is a backend's dataset object (TRL: a ``datasets.Dataset`` in the algorithm's
    column format) or a :class:`GeneratedDataset`.  ``rewards`` are the reward functions of
    on-policy algorithms (default for generated data: the arithmetic answer reward).
    ``tokenizer`` defaults to ``base``.  ``reward_model`` is a reward model checkpoint (a
    sequence-classification head, e.g. from a ``reward`` run) for algorithms that learn from one
    (``ppo``).
    """

    algorithm: str
    base: Path
    output: Path
    dataset: Any
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    mask: Path | None = None
    seed: int = 0
    device: str = "auto"
    tokenizer: Path | None = None
    rewards: Sequence[RewardFunction] = ()
    snapshots: SnapshotPolicy = field(default_factory=SnapshotPolicy)
    reward_model: Path | None = None


@dataclass
class TrainResult:
    """What a run wrote: the final checkpoint, its snapshots and its log.

    ``changed_mask`` is the ever-changed mask file, ``log_file`` the log as JSON lines and
    ``mask_report`` (masked runs) the JSON report whose violation count is ``mask_violations``.
    """

    checkpoint: Path
    snapshots: list[Path] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    mask_violations: int | None = None
    changed_mask: Path | None = None
    log_file: Path | None = None
    mask_report: Path | None = None


class TrainingBackend(ABC):
    """A training engine registered by ``sparsecheck_add_backends``."""

    name: ClassVar[str]
    algorithms: ClassVar[tuple[str, ...]]

    @abstractmethod
    def train(self, request: TrainRequest) -> TrainResult:
        """Run ``request`` and return where its outputs are."""
