"""``update_norm``: how large a fine-tuning update is relative to the weights it changed.

relative_norm = ‖θ_tuned - θ_base‖_F / ‖θ_base‖_F, over all compared tensors and per layer,
module type and tensor.  A model for third-party metric plugins: one Metric, one Reducer, one
hook implementation, registered through the ``sparsecheck`` entry-point group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sparsecheck import Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup, hookimpl

GRANULARITIES = ("tensor", "layer", "module")


def _group(granularity: str, name: str) -> str:
    """``layer``: the name up to its first integer component; ``module``: that index as ``*``."""
    parts = name.split(".")
    index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
    if granularity == "tensor":
        return name
    if index is None:
        return "other" if granularity == "layer" else name
    if granularity == "layer":
        return ".".join(parts[: index + 1])
    return ".".join([*parts[:index], "*", *parts[index + 1 :]])


class UpdateNormReducer(Reducer):
    def __init__(self, base: str, tuned: str) -> None:
        self.base, self.tuned = base, tuned
        #: tensor name -> (sum of squared update, sum of squared base weights)
        self.sums: dict[str, tuple[float, float]] = {}

    def update(self, group: TensorGroup) -> None:
        base = group.tensor(self.base).double()
        delta = group.tensor(self.tuned).double() - base
        self.sums[group.name] = (float(delta.square().sum()), float(base.square().sum()))

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        groups: dict[str, dict[str, dict[str, float | int | str | bool | None]]] = {}
        for granularity in GRANULARITIES:
            totals: dict[str, list[float]] = {}
            for name, (delta_sq, base_sq) in self.sums.items():
                total = totals.setdefault(_group(granularity, name), [0.0, 0.0])
                total[0] += delta_sq
                total[1] += base_sq
            groups[granularity] = {key: _fields(*sums) for key, sums in totals.items()}
        delta_sq = sum(d for d, _ in self.sums.values())
        base_sq = sum(b for _, b in self.sums.values())
        return MetricResult(
            metric="update_norm",
            value_field="relative_norm",
            fields={**_fields(delta_sq, base_sq), "tensors": len(self.sums), "skipped": len(skipped)},
            definition="update_norm: ||tuned - base||_F / ||base||_F in float64",
            groups=groups,
            skipped=list(skipped),
        )


def _fields(delta_sq: float, base_sq: float) -> dict[str, float | int | str | bool | None]:
    norm = math.sqrt(delta_sq)
    return {
        "relative_norm": norm / math.sqrt(base_sq) if base_sq else math.inf,
        "update_norm": norm,
        "base_norm": math.sqrt(base_sq),
    }


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


__all__ = ["UpdateNorm", "UpdateNormReducer"]
