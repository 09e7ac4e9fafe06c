"""``update_norm``: how large a fine-tuning update is relative to the weights it changed.

relative_norm = ‖θ_tuned - θ_base‖_F / ‖θ_base‖_F, over all compared tensors and per layer,
module type and tensor.  A model for third-party metric plugins: one Metric, one Reducer (its
costly per-tensor work in ``prepare``, which worker processes run ahead of ``update``), one hook
implementation, registered through the ``sparsecheck`` entry-point group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sparsecheck import (
    GRANULARITIES,
    Metric,
    MetricResult,
    Param,
    Reducer,
    SkippedTensor,
    TensorGroup,
    UsageError,
    group_key,
    hookimpl,
)

#: Entries converted to float64 at a time, so memory stays flat however large a tensor is.
CHUNK = 1 << 20
Fields = dict[str, float | int | str | bool | None]


class UpdateNormReducer(Reducer):
    """Sums ‖Δ‖² and ‖θ_base‖² per tensor; groups and the global value add those sums up."""

    def __init__(self, base: str, tuned: str) -> None:
        self.base, self.tuned = base, tuned
        #: tensor name -> (sum of squared update, sum of squared base weights)
        self.sums: dict[str, tuple[float, float]] = {}

    def prepare(self, group: TensorGroup) -> None:
        # In a worker process, ahead of update: the costly part, memoized (see Reducer.prepare).
        self._tensor_sums(group)

    def update(self, group: TensorGroup) -> None:
        # In the main process, in order: fetch the memoized sums and record them.
        self.sums[group.name] = self._tensor_sums(group)

    def _tensor_sums(self, group: TensorGroup) -> tuple[float, float]:
        return group.memo(("update_norm", self.base, self.tuned), lambda: self._compute(group))

    def _compute(self, group: TensorGroup) -> tuple[float, float]:
        base = group.tensor(self.base).reshape(-1)
        tuned = group.tensor(self.tuned).reshape(-1)
        delta_sq = base_sq = 0.0
        for start in range(0, base.numel(), CHUNK):
            b = base[start : start + CHUNK].double()
            delta_sq += float((tuned[start : start + CHUNK].double() - b).square().sum())
            base_sq += float(b.square().sum())
        return delta_sq, base_sq

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        if not self.sums:
            raise UsageError("update_norm: no tensor was compared (include/exclude select nothing)")
        groups: dict[str, dict[str, Fields]] = {}
        for granularity in GRANULARITIES:
            totals: dict[str, list[float]] = {}
            for name, (delta_sq, base_sq) in self.sums.items():
                total = totals.setdefault(group_key(granularity, name), [0.0, 0.0])
                total[0] += delta_sq
                total[1] += base_sq
            groups[granularity] = {key: _fields(*sums) for key, sums in totals.items()}
        delta_sq = sum(d for d, _ in self.sums.values())
        base_sq = sum(b for _, b in self.sums.values())
        return MetricResult(
            metric="update_norm",
            value_field="relative_norm",
            fields={**_fields(delta_sq, base_sq), "tensors": len(self.sums), "skipped": len(skipped)},
            definition="update_norm: ||tuned - base||_F / ||base||_F, summed in float64",
            groups=groups,
            skipped=list(skipped),
        )


def _fields(delta_sq: float, base_sq: float) -> Fields:
    """The fields of one group: 0 for no update, inf for an update of an all-zero base."""
    update_norm, base_norm = math.sqrt(delta_sq), math.sqrt(base_sq)
    relative = update_norm / base_norm if base_norm else (math.inf if update_norm else 0.0)
    return {"relative_norm": relative, "update_norm": update_norm, "base_norm": base_norm}


class UpdateNorm(Metric):
    name = "update_norm"
    summary = "relative Frobenius norm of the update, ||tuned - base|| / ||base||"
    params = (
        Param("base", "checkpoint", "the checkpoint before training"),
        Param("tuned", "checkpoint", "the checkpoint after training"),
    )
    value_field = "relative_norm"
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return UpdateNormReducer(args["base"], args["tuned"])


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [UpdateNorm()]


__all__ = ["UpdateNorm", "UpdateNormReducer", "sparsecheck_add_metrics"]
