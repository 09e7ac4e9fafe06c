"""The metric plugin API: parameters, the reducer protocol and results.

A metric declares its parameters, names the checkpoints it reads, and returns a
:class:`Reducer`.  The engine streams every tensor name once and hands each reducer a
:class:`TensorGroup` holding that name's tensor from every checkpoint the pass reads, so any
number of metrics -- built-in or third-party -- share one read of the checkpoints.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np

from sparsecheck._dtypes import to_torch
from sparsecheck.checkpoints._pairing import SkippedTensor as SkippedTensor  # results list them
from sparsecheck.checkpoints._reader import CheckpointReader, TensorMeta

if TYPE_CHECKING:
    import torch


Scalar = float | int | str | bool | None
Fields = dict[str, Scalar]

#: Kinds of metric parameters; the spec loader converts and validates values by kind.
ParamKind = Literal[
    "checkpoint",  # a key of the spec's ``checkpoints:`` table
    "checkpoints",  # a list of such keys (a run, in order)
    "mask",  # a mask file path, or a key of the checkpoints table
    "masks",  # a list of such masks
    "path",  # a file path (relative: from the spec file's folder), e.g. an output
    "float",
    "int",
    "bool",
    "str",
    "choice",
    "floats",
    "ints",
    "strings",
]

REQUIRED: Any = object()
T = TypeVar("T")


@dataclass(frozen=True)
class Param:
    """One argument a metric accepts under ``args:`` in a spec."""

    name: str
    kind: ParamKind
    help: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


#: Parameters every tensor-reading metric accepts; the engine applies them before reducers
#: see a tensor, so skipped and mismatched names are handled once, the same way everywhere.
SELECTION_PARAMS: tuple[Param, ...] = (
    Param("include", "strings", "glob patterns of tensor names to compare (default: all)", ()),
    Param("exclude", "strings", "glob patterns of tensor names to leave out", ()),
    Param(
        "on_mismatch",
        "choice",
        "a name on one side only or a shape mismatch: 'error' (default) or 'skip' and list it",
        "error",
        ("error", "skip"),
    ),
)


class TensorGroup:
    """One tensor name, as stored in each checkpoint of the read pass.

    ``array(key)`` is the stored data of checkpoint ``key`` as a read-only numpy array (dtypes
    numpy lacks, bfloat16 and float8, come as unsigned integers holding the bits; ``meta(key)``
    names the real dtype).  ``tensor(key)`` is the same data as a torch tensor, zero-copy.
    Never write into either: they may map the checkpoint file.  ``memo(key, compute)`` shares
    derived values (a changed-mask, |Δ|) between the metrics fed from this same read.
    ``reader(key)`` is the checkpoint's reader (its source, path and fingerprint).
    """

    def __init__(
        self,
        name: str,
        loader: Callable[[str], np.ndarray],
        meta: Callable[[str], TensorMeta],
        readers: Mapping[str, CheckpointReader] | None = None,
        memo: Mapping[Any, Any] | None = None,
    ) -> None:
        self.name = name
        self._loader = loader
        self._meta = meta
        self._readers = readers or {}
        self._memo: dict[Any, Any] = dict(memo or {})

    def reader(self, checkpoint: str) -> CheckpointReader:
        return self._readers[checkpoint]

    def array(self, checkpoint: str) -> np.ndarray:
        return self._loader(checkpoint)

    def tensor(self, checkpoint: str) -> torch.Tensor:
        return to_torch(self.array(checkpoint), self.meta(checkpoint).dtype)

    def meta(self, checkpoint: str) -> TensorMeta:
        return self._meta(checkpoint)

    def memo(self, key: Any, compute: Callable[[], T]) -> T:
        """Return ``compute()``, computed once per tensor name and ``key`` for all metrics."""
        if key not in self._memo:
            self._memo[key] = compute()
        value: T = self._memo[key]
        return value

    @property
    def memoized(self) -> Mapping[Any, Any]:
        """Every value computed through :meth:`memo` so far, by key (the engine hands them from
        a worker process to the main one; a new group can start from them with ``memo=``)."""
        return self._memo


@dataclass
class MetricResult:
    """What a metric computed.

    ``value`` is the primary number (``fields[value_field]``); ``groups`` maps a granularity
    (``tensor``, ``layer``, ``module``, …) to group key → fields, each group carrying
    ``value_field`` too, so ``per:`` expectations apply to groups like to the whole.
    """

    metric: str
    value_field: str
    fields: Fields
    definition: str
    groups: dict[str, dict[str, Fields]] = field(default_factory=dict)
    series: dict[str, list[Scalar]] = field(default_factory=dict)
    skipped: list[SkippedTensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def value(self) -> Scalar:
        return self.fields.get(self.value_field)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value_field": self.value_field,
            "value": self.value,
            "definition": self.definition,
            "fields": dict(self.fields),
            "groups": {k: dict(v) for k, v in self.groups.items()},
            "series": dict(self.series),
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricResult:
        return cls(
            metric=data["metric"],
            value_field=data["value_field"],
            fields=dict(data["fields"]),
            definition=data["definition"],
            groups={k: dict(v) for k, v in data.get("groups", {}).items()},
            series=dict(data.get("series", {})),
            skipped=[SkippedTensor(s["name"], s["reason"]) for s in data.get("skipped", [])],
            notes=list(data.get("notes", [])),
        )


class Reducer(ABC):
    """Accumulates one check's metric over the tensor names of the pass.

    The engine calls ``update`` in the main process, once per tensor name in storage order.
    With more than one worker (``--workers``) it first calls ``prepare`` for the coming names in
    worker processes: put the costly per-tensor work there, through ``group.memo``, and let
    ``update`` fetch it from the memo and only record it.  The tensors' work then runs on
    several cores.
    """

    def prepare(self, group: TensorGroup) -> None:  # noqa: B027 - optional hook, empty by design
        """Compute ``group``'s costly values into ``group.memo`` ahead of ``update``.

        Runs in a worker process (a fork of the main one), while other names are prepared or
        updated: read ``group`` and compute, never change the reducer's own state, which the main
        process would not see.  The memoized values travel back by pickle: keep them small
        (counts, sums, packed masks), never the tensors themselves; a value that cannot be
        pickled is computed again by ``update``.  An exception here is the check's error, as one
        from ``update`` is.  The default does nothing.
        """

    @abstractmethod
    def update(self, group: TensorGroup) -> None:
        """Take one tensor name (called once per selected name, in storage order)."""

    @abstractmethod
    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        """Return the result; ``skipped`` lists the names the engine left out, and why."""


class Metric(ABC):
    """A measurable property of checkpoints, registered by ``sparsecheck_add_metrics``."""

    #: Name used under ``metric:`` in specs.
    name: ClassVar[str]
    #: One line for ``sparsecheck metrics``.
    summary: ClassVar[str]
    #: The metric's own parameters (``SELECTION_PARAMS`` are added when ``reads_tensors``).
    params: ClassVar[tuple[Param, ...]] = ()
    #: The field that is the primary value, compared by ``expect: {gt: …}``.
    value_field: ClassVar[str]
    #: Granularities a spec may ask for with ``per:``.
    granularities: ClassVar[tuple[str, ...]] = ()
    #: Whether the engine streams tensors to this metric's reducer.
    reads_tensors: ClassVar[bool] = True
    #: Whether results may come from the result cache (False for metrics with side effects).
    cacheable: ClassVar[bool] = True

    @classmethod
    def all_params(cls) -> tuple[Param, ...]:
        return cls.params + (SELECTION_PARAMS if cls.reads_tensors else ())

    def checkpoints(self, args: Mapping[str, Any]) -> list[str]:
        """Keys of the checkpoints this check reads, in order (default: checkpoint params)."""
        keys: list[str] = []
        for param in self.all_params():
            value = args.get(param.name)
            if param.kind == "checkpoint" and isinstance(value, str):
                keys.append(value)
            elif param.kind == "checkpoints" and isinstance(value, list):
                keys.extend(value)
        return keys

    @abstractmethod
    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        """Return a fresh reducer for one check with validated ``args``."""
