"""The ``mask_overlap`` metric: how much two runs from one base updated the same entries.

Masks m1, m2 come from two runs (``run_a``, ``run_b``, each compared with ``base``) or from two
mask files (``mask_a``, ``mask_b``).  Reported globally, per tensor, per layer and per module
type, each group with its own baselines (METRICS.md, mask_overlap):

- ``o1`` = |m1∧m2| / |m1|, ``o2`` = |m1∧m2| / |m2|; uniform baselines ``baseline_o1`` = |m2| / n,
  ``baseline_o2`` = |m1| / n; ``lift_o1`` = o1 / baseline_o1 (the value), ``lift_o2``;
  ``jaccard`` = |m1∧m2| / |m1∨m2|;
- ``z_score`` and ``log10_p``: |m1∧m2| against the hypergeometric null (population n, |m1|
  marked, |m2| drawn), upper tail;
- with ``base``: ``baseline_o1_matched`` = Σ_b |m1∩b|·|m2∩b|/|b| / |m1| over strata b of entries
  whose base value has one binary exponent (zeros one stratum, inf and NaN one, subnormals share
  their dtype's exponent field 0; sign ignored; the stratum is the unbiased exponent, so equal
  exponents of different dtypes share one), ``baseline_o2_matched`` likewise, and their lifts.
  Without ``base`` (two mask files alone) these four fields are null.

Edge cases: a ratio with a zero denominator is NaN (|m1| = 0 makes o1 and lift_o1 NaN, |m2| = 0
makes o2 NaN and baseline_o1 0, so lift_o1 NaN), and a note says which mask is empty;
``z_score`` is NaN when the null has no variance (|m1| or |m2| is 0 or n), where ``log10_p`` is 0.
Only per-stratum counts are kept per tensor, never a mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Fields, Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup
from sparsecheck.metrics._equality import POLICY_PARAMS, EqualityPolicy, compare
from sparsecheck.metrics._grouping import GRANULARITIES, group_key, sort_keys
from sparsecheck.metrics._hypergeom import log10_upper_tail, z_score
from sparsecheck.metrics._maskfile import popcount
from sparsecheck.metrics._maskset import MaskSet
from sparsecheck.metrics._strata import STRATA, Strata, stratum_counts


@dataclass(frozen=True)
class TensorOverlap:
    """The counts of one tensor: entries, |m1|, |m2|, |m1∧m2|, and strata when a base is given."""

    numel: int
    changed_a: int
    changed_b: int
    both: int
    strata: Strata | None = None

    @classmethod
    def of_strata(cls, strata: Strata) -> TensorOverlap:
        total, a, b = (int(counts.sum()) for counts in (strata.total, strata.changed_a, strata.changed_b))
        return cls(total, a, b, strata.both, strata)


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom else float("nan")


def _matched_intersection(items: Sequence[TensorOverlap]) -> float | None:
    """E|m1∧m2| with m2 random within each stratum of the group; None without strata."""
    strata = [item.strata for item in items]
    if not strata or any(s is None for s in strata):
        return None
    total, changed_a, changed_b = (np.zeros(STRATA, dtype=np.int64) for _ in range(3))
    for s in strata:
        assert s is not None
        total[s.ids] += s.total
        changed_a[s.ids] += s.changed_a
        changed_b[s.ids] += s.changed_b
    used = total > 0
    return float(np.sum(changed_a[used].astype(np.float64) * changed_b[used] / total[used]))


def overlap_fields(items: Sequence[TensorOverlap]) -> Fields:
    """Every mask_overlap field of a group of tensors (see the module docstring)."""
    n = sum(item.numel for item in items)
    a = sum(item.changed_a for item in items)
    b = sum(item.changed_b for item in items)
    both = sum(item.both for item in items)
    o1, o2 = _ratio(both, a), _ratio(both, b)
    baseline_o1, baseline_o2 = _ratio(b, n), _ratio(a, n)
    fields: Fields = {
        "o1": o1,
        "o2": o2,
        "baseline_o1": baseline_o1,
        "baseline_o2": baseline_o2,
        "lift_o1": _ratio(o1, baseline_o1),
        "lift_o2": _ratio(o2, baseline_o2),
        "jaccard": _ratio(both, a + b - both),
        "intersection": both,
        "changed_a": a,
        "changed_b": b,
        "compared": n,
        "z_score": z_score(both, n, a, b) if n else float("nan"),
        "log10_p": log10_upper_tail(both, n, a, b) if n else float("nan"),
    }
    matched = _matched_intersection(items)
    matched_o1 = None if matched is None else _ratio(matched, a)
    matched_o2 = None if matched is None else _ratio(matched, b)
    fields.update(
        baseline_o1_matched=matched_o1,
        baseline_o2_matched=matched_o2,
        lift_o1_matched=None if matched_o1 is None else _ratio(o1, matched_o1),
        lift_o2_matched=None if matched_o2 is None else _ratio(o2, matched_o2),
    )
    return fields


@dataclass
class OverlapTally:
    """Per-tensor counts of one pass, summarised globally and per group."""

    counts: dict[str, TensorOverlap] = field(default_factory=dict)

    def groups(self) -> dict[str, dict[str, Fields]]:
        groups: dict[str, dict[str, Fields]] = {}
        for granularity in GRANULARITIES:
            members: dict[str, list[TensorOverlap]] = {}
            for name, count in self.counts.items():
                members.setdefault(group_key(granularity, name), []).append(count)
            groups[granularity] = {}
            for key in sort_keys(members):
                fields = overlap_fields(members[key])
                if granularity != "tensor":
                    fields["tensors"] = len(members[key])
                groups[granularity][key] = fields
        return groups


def _packed_overlap(masks: MaskSet, name: str) -> TensorOverlap:
    """Counts of two mask files' tensor from the packed bits, unpacking nothing (no strata)."""
    a, b = (f.packed(name) for f in masks.files)
    numel = masks.numel(name)
    return TensorOverlap(numel, popcount(a, numel), popcount(b, numel), popcount(a & b, numel))


def _from_runs(metric: str, args: Mapping[str, Any]) -> bool:
    """Whether the masks come from run_a/run_b (else from mask_a/mask_b); UsageError if neither."""
    runs = [key for key in ("run_a", "run_b") if args.get(key) is not None]
    masks = [key for key in ("mask_a", "mask_b") if args.get(key) is not None]
    problem = ""
    if runs and masks:
        problem = f"give runs or mask files, not both ({', '.join(runs + masks)} given)"
    elif len(runs) == 2 and args.get("base") is None:
        problem = "run_a and run_b need base (their masks are their changes from it)"
    elif len(runs) + len(masks) != 2:
        given = runs + masks
        problem = f"only {given[0]} given" if given else "no runs and no mask files given"
    if problem:
        raise UsageError(
            f"{metric}: {problem}; give base, run_a and run_b, or mask_a and mask_b "
            "(mask files; base optional, for the magnitude-matched baseline)"
        )
    return bool(runs)


def _overlap(group: TensorGroup, base: str, mask_a: np.ndarray, mask_b: np.ndarray) -> TensorOverlap:
    """The counts of two masks of ``group``'s tensor, with the strata of its ``base`` weights."""
    strata = stratum_counts(group.array(base), group.meta(base).dtype, mask_a, mask_b)
    return TensorOverlap.of_strata(strata)


class MaskOverlapReducer(Reducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        self.metric = metric
        self.base: str | None = args.get("base")
        self.runs = (args.get("run_a"), args.get("run_b"))
        from_runs = _from_runs(metric, args)
        paths = {label: str(args[label]) for label in ("mask_a", "mask_b")} if not from_runs else {}
        self.masks = MaskSet(metric, paths, args) if paths else None
        self.policy = EqualityPolicy.from_args(args) if self.masks is None else self.masks.policy()
        self.tally = OverlapTally()

    def prepare(self, group: TensorGroup) -> None:
        if self.masks is None:  # mask files are read in order, by update
            self._from_runs(group)

    def update(self, group: TensorGroup) -> None:
        if self.masks is None:
            self.tally.counts[group.name] = self._from_runs(group)
            return
        assert self.base is not None  # the engine streams tensors only when there is a base
        pair = self.masks.read(group.name, group.meta(self.base).shape)
        if pair is not None:
            self.tally.counts[group.name] = _overlap(group, self.base, pair[0], pair[1])

    def _from_runs(self, group: TensorGroup) -> TensorOverlap:
        base, (run_a, run_b) = self.base, self.runs
        assert base is not None and run_a is not None and run_b is not None

        def compute() -> TensorOverlap:
            mask_a = compare(group, base, run_a, self.policy).mask
            mask_b = compare(group, base, run_b, self.policy).mask
            return _overlap(group, base, mask_a, mask_b)

        return group.memo(("overlap", base, run_a, run_b, self.policy), compute)

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        notes: list[str] = []
        skipped = list(skipped)
        if self.masks is not None:
            try:
                if self.base is None:
                    for name in self.masks.pairing.names:
                        self.tally.counts[name] = _packed_overlap(self.masks, name)
                notes, more = self.masks.finish(with_base=self.base is not None)
                skipped += more
            finally:
                self.masks.close()
        if not self.tally.counts:
            raise UsageError(f"{self.metric}: no tensor was compared (include/exclude select nothing)")
        fields = overlap_fields(list(self.tally.counts.values()))
        fields.update(
            tensors=len(self.tally.counts),
            skipped=len(skipped),
            policy=self.policy.name,
            tol=self.policy.tol,
            masks="checkpoints" if self.masks is None else "mask files",
        )
        return MetricResult(
            metric=self.metric,
            value_field="lift_o1",
            fields=fields,
            definition=self._definition(),
            groups=self.tally.groups(),
            skipped=sorted(skipped, key=lambda s: s.name),
            notes=notes + self._edge_notes(fields),
        )

    def _definition(self) -> str:
        source = (
            f"masks of base→run_a and base→run_b, {self.policy.describe()}"
            if self.masks is None
            else f"masks from files {self.masks.paths['mask_a']} and {self.masks.paths['mask_b']}"
        )
        matched = "; matched baselines stratified by the base value's binary exponent" if self.base else ""
        return (
            f"{self.metric}: o1 = |m1∧m2|/|m1|, o2 = |m1∧m2|/|m2|, uniform baselines |m2|/n and |m1|/n, "
            f"lift = o/baseline, Jaccard, hypergeometric z and log10 upper-tail p{matched}; {source}; "
            "METRICS.md"
        )

    def _edge_notes(self, fields: Fields) -> list[str]:
        labels = ("run_a", "run_b") if self.masks is None else ("mask_a", "mask_b")
        notes = [
            f"{label} changed no entry: {ratio} and lift_{ratio} are undefined (NaN)"
            for label, count, ratio in zip(labels, ("changed_a", "changed_b"), ("o1", "o2"), strict=True)
            if fields[count] == 0
        ]
        if self.base is None:
            notes.append("no base given: the magnitude-matched baselines need its values (fields null)")
        return notes


class MaskOverlap(Metric):
    name = "mask_overlap"
    summary = "overlap of two runs' update masks against uniform and magnitude-matched chance"
    params = (
        Param(
            "base",
            "checkpoint",
            "the common base (required with run_a/run_b; with mask files, "
            "gives the magnitude-matched baseline)",
            None,
        ),
        Param("run_a", "checkpoint", "the first run's tuned checkpoint (m1 = its changes from base)", None),
        Param("run_b", "checkpoint", "the second run's tuned checkpoint (m2)", None),
        Param("mask_a", "mask", "a mask file (sparsecheck mask) for m1, instead of run_a", None),
        Param("mask_b", "mask", "a mask file for m2, instead of run_b", None),
        *POLICY_PARAMS,
    )
    value_field = "lift_o1"
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return MaskOverlapReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [MaskOverlap()]
