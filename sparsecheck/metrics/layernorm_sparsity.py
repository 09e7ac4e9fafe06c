"""The ``layernorm_sparsity`` metric: update sparsity over normalization parameters only.

:class:`UpdateSparsity` restricted, in its reducer, to tensor names that match a glob of
``patterns`` (case-insensitive; by default names containing ``norm``, ``ln_`` or ``layernorm``:
LayerNorm / RMSNorm weights and biases).  The engine's ``include``/``exclude`` apply first;
names that are not normalization parameters are never read for this check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup
from sparsecheck.metrics.update_sparsity import UpdateSparsity, UpdateSparsityReducer

NORM_PATTERNS = ("*norm*", "*ln_*", "*layernorm*")


def is_norm(name: str, patterns: Sequence[str]) -> bool:
    """Whether ``name`` matches one of the glob ``patterns``, ignoring case."""
    lowered = name.lower()
    return any(fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


class LayerNormSparsityReducer(UpdateSparsityReducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        super().__init__(metric, args)
        self.patterns: list[str] = list(args.get("patterns", NORM_PATTERNS))
        if not self.patterns:
            raise UsageError(f"{metric}: args.patterns is empty; give at least one glob")

    def prepare(self, group: TensorGroup) -> None:
        if is_norm(group.name, self.patterns):
            super().prepare(group)

    def update(self, group: TensorGroup) -> None:
        if is_norm(group.name, self.patterns):
            super().update(group)

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        shown = ", ".join(self.patterns)
        if not self.tally.counts:
            raise UsageError(
                f"{self.metric}: no normalization tensor matched the patterns {shown} "
                "(after include/exclude); set args.patterns"
            )
        result = super().finish([s for s in skipped if is_norm(s.name, self.patterns)])
        result.definition += f"; normalization tensors only (names matching {shown}, any case)"
        return result


class LayerNormSparsity(UpdateSparsity):
    name = "layernorm_sparsity"
    summary = "update_sparsity over normalization parameters only (the seed expects about 100%)"
    params = (
        *UpdateSparsity.params,
        Param("patterns", "strings", "glob patterns naming normalization tensors, any case", NORM_PATTERNS),
    )

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return LayerNormSparsityReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [LayerNormSparsity()]
