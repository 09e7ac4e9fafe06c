"""The ``update_mask`` metric: write the changed-entry mask of BASE → TUNED to a mask file.

The mask (METRICS.md, "Mask") is what subnetwork-only training may update.  It is written from
the same comparison ``update_sparsity`` uses in the pass (no second read), as packed bits with
the policy and both checkpoints' fingerprints in its metadata, atomically when the pass ends.
The result's value is the density: the fraction of entries the mask lets train.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sparsecheck._atomic import prepare_output_path
from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup
from sparsecheck.metrics._equality import POLICY_PARAMS, EqualityPolicy, compare
from sparsecheck.metrics._maskfile import MaskWriter, mask_metadata


class UpdateMaskReducer(Reducer):
    def __init__(self, args: Mapping[str, Any]) -> None:
        self.base, self.tuned = args["base"], args["tuned"]
        self.policy = EqualityPolicy.from_args(args)
        self.output = Path(args["output"])
        self.writer: MaskWriter | None = None
        self.changed = self.compared = 0

    def prepare(self, group: TensorGroup) -> None:
        compare(group, self.base, self.tuned, self.policy)

    def update(self, group: TensorGroup) -> None:
        if self.writer is None:
            metadata = mask_metadata(self.policy, group.reader(self.base), group.reader(self.tuned))
            self.writer = MaskWriter(self.output, metadata)
        comparison = compare(group, self.base, self.tuned, self.policy)
        self.writer.add_packed(group.name, comparison.packed, comparison.shape)
        self.changed += comparison.changed
        self.compared += comparison.numel

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        if self.writer is None:
            raise UsageError("update_mask: no tensor was compared (include/exclude select nothing)")
        prepare_output_path(self.output, "output")
        try:
            self.writer.close()
        except OSError as exc:  # a full or read-only file system
            raise UsageError(
                f"option -o / output: cannot write {self.output}: {exc.strerror or exc}"
            ) from None
        return MetricResult(
            metric="update_mask",
            value_field="density",
            fields={
                "density": self.changed / self.compared,
                "changed": self.changed,
                "compared": self.compared,
                "skipped": len(skipped),
                "output": str(self.output),
                "policy": self.policy.name,
                "tol": self.policy.tol,
            },
            definition=f"update_mask: entries changed under {self.policy.describe()}, in {self.output}",
            skipped=list(skipped),
        )


class UpdateMask(Metric):
    name = "update_mask"
    summary = "write the mask of changed entries (packed bits) to a file; value: its density"
    params = (
        Param("base", "checkpoint", "the checkpoint before the training stage"),
        Param("tuned", "checkpoint", "the checkpoint after it"),
        Param("output", "path", "the mask file to write (a relative path is from the spec's folder)"),
        *POLICY_PARAMS,
    )
    value_field = "density"
    #: It writes a file: a cached result would skip writing it.
    cacheable = False

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return UpdateMaskReducer(args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [UpdateMask()]
