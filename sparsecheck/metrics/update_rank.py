"""The ``update_rank`` metric: how low-rank the update ΔW = tuned - base of each matrix is.

For every selected 2-D floating-point tensor (others are counted in ``non_matrix_skipped``):
numerical rank #{sigma_i > tol} of ΔW as a percentage of min(m, n), stable rank and effective
rank (METRICS.md, "update_rank"), summarised over matrices, per layer and per module type.

Cost. One SVD (singular values only) per matrix: numpy's LAPACK on the CPU, no torch needed;
``torch.linalg.svdvals`` on CUDA (the ``torch`` extra). On a 2-core CPU a 7B model's 226
matrices take tens of minutes (``benchmarks/bench_rank.py`` measures it): use
``max_matrices``/``sample`` for a quick look, or CUDA. On CUDA (``device: auto`` picks it when
torch is installed and sees a GPU) both sides travel in their stored dtype, ΔW is formed on the
GPU, and same-shape updates are decomposed in batches of up to 2 GiB; on the CPU one matrix is
decomposed at a time (``batch: true`` batches there too).

Sampling.  The engine streams names in storage order and a reducer cannot know how many
matrices are coming, so the choice is made per name, deterministically: ``sample: first``
keeps the first ``max_matrices`` matrices; ``sample: random`` keeps a matrix when a hash of
``seed`` and its name, read as a number in [0, 1), is below ``sample_fraction`` (the same
names on every run, whatever the layout), then ``max_matrices``, if given, keeps the first
of those in storage order.  The result's fields and notes say what was chosen.

bf16 storage.  A tuned weight stored in bf16 is rounded to 8 significant bits, and that
rounding error is full-rank noise of relative size ~2^-9 in ΔW; it lies above the default
tolerance, so a planted rank-r update stored in bf16 shows a (near) full numerical rank.
Stable and effective rank are far less sensitive to it; an ``atol`` above the rounding noise
recovers the update's rank.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsecheck._dtypes import FLOATS
from sparsecheck._extras import available, require
from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.metrics._api import Fields, Metric, MetricResult, Param, Reducer, SkippedTensor, TensorGroup
from sparsecheck.metrics._grouping import GRANULARITIES, group_key, sort_keys

if TYPE_CHECKING:
    from sparsecheck.metrics._svd import Spectrum, SvdBatcher

_LOW_PRECISION = frozenset({"bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"})


@dataclass
class MatrixSampler:
    """Decides, name by name in storage order, which matrices are decomposed."""

    max_matrices: int | None = None
    fraction: float | None = None
    seed: int = 0
    seen: int = 0
    taken: int = 0

    @classmethod
    def from_args(cls, metric: str, args: Mapping[str, Any]) -> MatrixSampler:
        cap, sample, fraction = args["max_matrices"], args["sample"], args["sample_fraction"]
        if cap is not None and cap < 1:
            raise UsageError(f"{metric}: max_matrices must be at least 1, not {cap}")
        if sample == "random" and (fraction is None or not 0 < fraction <= 1):
            raise UsageError(f"{metric}: sample: random needs sample_fraction in (0, 1], got {fraction}")
        if sample == "first" and fraction is not None:
            raise UsageError(f"{metric}: sample_fraction applies to sample: random only")
        return cls(cap, fraction, args["seed"])

    def take(self, name: str) -> bool:
        self.seen += 1
        if self.max_matrices is not None and self.taken >= self.max_matrices:
            return False
        if self.fraction is not None and _unit_hash(self.seed, name) >= self.fraction:
            return False
        self.taken += 1
        return True

    @property
    def sampled(self) -> bool:
        return self.taken < self.seen

    def describe(self) -> str:
        if self.fraction is None:
            return f"first {self.max_matrices} in storage order"
        text = f"random (sample_fraction {self.fraction:g}, seed {self.seed}, by a hash of the name)"
        return text if self.max_matrices is None else f"{text}, capped at the first {self.max_matrices}"


def _unit_hash(seed: int, name: str) -> float:
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def resolve_device(metric: str, wanted: str) -> str:
    """``cpu`` → numpy; ``auto`` → CUDA when torch is installed and sees a GPU, else the CPU;
    ``cuda`` without torch or without a GPU is a usage error."""
    if wanted == "cpu" or (wanted == "auto" and not available("torch")):
        return "cpu"
    torch = require("torch", f"{metric}: device: {wanted}")
    if torch.cuda.is_available():
        return "cuda"
    if wanted == "cuda":
        raise UsageError(f"{metric}: device: cuda, but torch sees no CUDA device (use auto or cpu)")
    return "cpu"


def _summary(spectra: Sequence[Spectrum]) -> Fields:
    """Means and min over the changed matrices (ΔW ≠ 0: an untouched matrix has rank 0 and
    would pull the mean down), and ``rank_pct_mean_all`` over every matrix."""
    changed = [s for s in spectra if s.sigma_max > 0]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else math.nan

    energy: Fields = {}
    for r in spectra[0].energy:  # over every matrix: a zero update keeps all of its energy
        shares = [s.energy[r] for s in spectra]
        energy[f"energy_rank_{r}_mean"] = mean(shares)
        energy[f"energy_rank_{r}_min"] = min(shares)
    return {
        "rank_pct_mean": mean([s.rank_pct for s in changed]),
        "rank_pct_mean_all": mean([s.rank_pct for s in spectra]),
        "rank_pct_min": min((s.rank_pct for s in changed), default=math.nan),
        "stable_rank_mean": mean([s.stable_rank for s in changed]),
        "effective_rank_mean": mean([s.effective_rank for s in changed]),
        "matrices": len(spectra),
        "changed_matrices": len(changed),
        "full_rank_matrices": sum(s.rank == s.full for s in spectra),
        **energy,
    }


def _tensor_fields(spectrum: Spectrum) -> Fields:
    return {
        "rank_pct_mean": spectrum.rank_pct,  # the value field, so ``per: tensor`` expectations work
        "rank": spectrum.rank,
        "rank_pct": spectrum.rank_pct,
        "stable_rank": spectrum.stable_rank,
        "effective_rank": spectrum.effective_rank,
        "shape": f"{spectrum.shape[0]} x {spectrum.shape[1]}",
        "sigma_max": spectrum.sigma_max,
        "tol": spectrum.tol,
        **{f"energy_rank_{r}": share for r, share in spectrum.energy.items()},
    }


class UpdateRankReducer(Reducer):
    def __init__(self, metric: str, args: Mapping[str, Any]) -> None:
        from sparsecheck.metrics._svd import BATCH_BYTES, RankTolerance, SvdBatcher, numpy_svdvals

        self.metric = metric
        self.base: str = args["base"]
        self.tuned: str = args["tuned"]
        self.precision: str = args["precision"]
        self.sampler = MatrixSampler.from_args(metric, args)
        self.device = resolve_device(metric, args["device"])
        batch = args["batch"] if args["batch"] is not None else self.device == "cuda"
        ranks = tuple(args["ranks"])
        if any(r < 1 for r in ranks):
            raise UsageError(f"{metric}: ranks must be positive integers, not {list(ranks)}")
        svdvals = numpy_svdvals
        if self.device == "cuda":
            from sparsecheck.metrics._svd_torch import torch_svdvals as svdvals
        self.batcher: SvdBatcher = SvdBatcher(
            RankTolerance(self.precision, args["atol"]), BATCH_BYTES if batch else 0, svdvals, ranks
        )
        self.non_matrix = 0
        self.low_precision = 0
        self.non_finite: list[SkippedTensor] = []

    def update(self, group: TensorGroup) -> None:
        metas = (group.meta(self.base), group.meta(self.tuned))
        if any(len(m.shape) != 2 or min(m.shape) == 0 or m.dtype not in FLOATS for m in metas):
            self.non_matrix += 1
            return
        if not self.sampler.take(group.name):
            return
        delta = self._delta(group)
        if not bool(delta.isfinite().all() if self.device == "cuda" else np.isfinite(delta).all()):
            self.non_finite.append(SkippedTensor(group.name, "ΔW has NaN or infinite entries"))
            return
        self.low_precision += any(m.dtype in _LOW_PRECISION for m in metas)
        self.batcher.add(group.name, delta)

    def _delta(self, group: TensorGroup) -> Any:
        """ΔW as a numpy array, or on CUDA as a torch tensor there."""
        if self.device == "cuda":
            import torch

            from sparsecheck.metrics._svd_torch import update_matrix as on_device

            cuda = torch.device("cuda")
            return on_device(group.tensor(self.base), group.tensor(self.tuned), cuda, self.precision)
        from sparsecheck.metrics._svd import update_matrix

        base, tuned = group.meta(self.base), group.meta(self.tuned)
        arrays = group.array(self.base), group.array(self.tuned)
        return update_matrix(arrays[0], base.dtype, arrays[1], tuned.dtype, self.precision)

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        self.batcher.flush()
        done = self.batcher.done
        if not done:
            raise UsageError(
                f"{self.metric}: no 2-D tensor was decomposed ({self.non_matrix} tensors were not "
                f"2-D floating-point matrices, {len(self.non_finite)} had a non-finite ΔW; "
                "check include/exclude)"
            )
        sampler = self.sampler
        fields = _summary(list(done.values()))
        fields.update(
            matrices_total=sampler.seen,
            non_matrix_skipped=self.non_matrix,
            skipped=len(skipped) + len(self.non_finite),
            tol_rule=self.batcher.tolerance.describe(),
            precision=self.precision,
            device=self.device,
            sampled=sampler.sampled,
            max_matrices=sampler.max_matrices,
        )
        return MetricResult(
            metric=self.metric,
            value_field="rank_pct_mean",
            fields=fields,
            definition=(
                f"{self.metric}: numerical rank of ΔW = tuned - base per 2-D tensor, in {self.precision}: "
                f"#{{sigma_i > tol}}, tol = {self.batcher.tolerance.describe()}; "
                "rank_pct = 100 · rank / min(m, n), mean and min over changed matrices (ΔW ≠ 0; "
                "rank_pct_mean_all: mean over all); "
                "stable rank ‖ΔW‖_F²/‖ΔW‖_2², effective rank exp(H(sigma/sum(sigma))); "
                "a zero update has all three 0; energy_rank_r = sum of the top r sigma² / sum(sigma²) "
                "(1 for a zero update); METRICS.md"
            ),
            groups=self._groups(done),
            skipped=[*skipped, *self.non_finite],
            notes=self._notes(len(done)),
        )

    def _groups(self, done: Mapping[str, Spectrum]) -> dict[str, dict[str, Fields]]:
        groups: dict[str, dict[str, Fields]] = {
            "tensor": {n: _tensor_fields(done[n]) for n in sort_keys(done)}
        }
        for granularity in GRANULARITIES:
            if granularity != "tensor":
                members: dict[str, list[Spectrum]] = {}
                for name, spectrum in done.items():
                    members.setdefault(group_key(granularity, name), []).append(spectrum)
                groups[granularity] = {key: _summary(members[key]) for key in sort_keys(members)}
        return groups

    def _notes(self, decomposed: int) -> list[str]:
        notes = []
        if self.sampler.sampled:
            notes.append(
                f"rank computed on {decomposed} of {self.sampler.seen} matrices, "
                f"sampled: {self.sampler.describe()}"
            )
        if self.low_precision and self.batcher.tolerance.atol is None:
            notes.append(
                f"{self.low_precision} matrices are stored in 16 bits or fewer: their rounding adds "
                "full-rank noise to ΔW, which the default tolerance counts, and which inflates effective "
                "rank too (a rank-1 update stored in bf16 can read ~150); stable rank is robust only "
                "where the update is far above the noise; an atol above the noise's largest singular "
                "value recovers the numerical rank"
            )
        untouched = sum(s.sigma_max == 0 for s in self.batcher.done.values())
        if untouched:
            notes.append(
                f"{untouched} matrices are untouched (ΔW = 0): left out of the means and min "
                "(rank_pct_mean_all counts them at rank 0)"
            )
        return notes


class UpdateRank(Metric):
    name = "update_rank"
    summary = "numerical, stable and effective rank of each 2-D update ΔW (the seed's Table 2)"
    params = (
        Param("base", "checkpoint", "the checkpoint before the training stage"),
        Param("tuned", "checkpoint", "the checkpoint after it"),
        Param("precision", "choice", "dtype of ΔW and its SVD", "float32", ("float32", "float64")),
        Param("atol", "float", "absolute tolerance on sigma_i (default: sigma_max · max(m, n) · eps)", None),
        Param(
            "device",
            "choice",
            "where to decompose: auto (CUDA when available), cpu, cuda",
            "auto",
            ("auto", "cpu", "cuda"),
        ),
        Param("batch", "bool", "batch same-shape SVDs in up to 2 GiB (default: on CUDA only)", None),
        Param("max_matrices", "int", "decompose at most this many matrices (default: all)", None),
        Param(
            "sample",
            "choice",
            "which matrices: first (storage order) or random (by sample_fraction)",
            "first",
            ("first", "random"),
        ),
        Param("sample_fraction", "float", "sample: random keeps this share of matrices (by name hash)", None),
        Param("seed", "int", "seed of sample: random", 0),
        Param(
            "ranks",
            "ints",
            "for each r: energy_rank_<r>, the share of ‖ΔW‖_F² in the top r singular values "
            "(could the update ship as a rank-r LoRA?)",
            (),
        ),
    )
    value_field = "rank_pct_mean"
    granularities = GRANULARITIES

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return UpdateRankReducer(self.name, args)


@hookimpl
def sparsecheck_add_metrics() -> list[Metric]:
    return [UpdateRank()]
