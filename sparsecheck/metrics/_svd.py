"""Singular values of weight updates, one matrix at a time or in same-shape batches.

The compute side of ``update_rank``: ΔW = tuned - base with numpy, the spectrum summaries of
METRICS.md (numerical rank, stable rank, effective rank), and a batcher that stacks same-shape
updates for one SVD call.  On the CPU numpy's LAPACK (``gesdd``) decomposes; on CUDA
:mod:`sparsecheck.metrics._svd_torch` supplies torch's ΔW and decomposition to the same batcher.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sparsecheck._dtypes import widen

#: Pending updates a batch may hold before it is decomposed (a GPU-memory budget).
BATCH_BYTES = 2 << 30
PRECISIONS: dict[str, np.dtype[Any]] = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
#: A ΔW: a numpy array, or a torch tensor on the compute device.
Matrix = Any
#: Singular values (``B x min(m, n)``, float64 numpy) of a list of same-shape matrices; empties
#: the list before decomposing, so the unstacked matrices go before the workspace comes.
SvdValues = Callable[[list[Matrix]], np.ndarray]


@dataclass(frozen=True)
class RankTolerance:
    """The rank rule: sigma_i counts when sigma_i > tol.

    By default tol = sigma_max · max(m, n) · eps(precision) (``numpy.linalg.matrix_rank``'s rule);
    ``atol`` gives an absolute tolerance instead.
    """

    precision: str
    atol: float | None = None

    @property
    def eps(self) -> float:
        return float(np.finfo(PRECISIONS[self.precision]).eps)

    def describe(self) -> str:
        if self.atol is not None:
            return f"atol {self.atol:g}"
        return f"sigma_max * max(m, n) * eps({self.precision})"


@dataclass(frozen=True)
class Spectrum:
    """What the singular values of one ΔW say (all zero for a zero update)."""

    shape: tuple[int, int]
    rank: int
    sigma_max: float
    tol: float
    stable_rank: float
    effective_rank: float
    #: r → share of ‖ΔW‖_F² = sum(sigma²) in the top r singular values (1 for a zero update).
    energy: dict[int, float] = field(default_factory=dict)

    @property
    def full(self) -> int:
        return min(self.shape)

    @property
    def rank_pct(self) -> float:
        return 100.0 * self.rank / self.full


def update_matrix(
    base: np.ndarray, base_dtype: str, tuned: np.ndarray, tuned_dtype: str, precision: str
) -> np.ndarray:
    """ΔW = tuned - base as a fresh array of ``precision``.

    Each side is widened exactly from its stored dtype; the difference is taken in float64 when
    either side is stored in float64, so the result is rounded once.  The stored arrays are
    never written.
    """
    wide = np.dtype(np.float64) if "float64" in (base_dtype, tuned_dtype) else PRECISIONS[precision]
    delta = widen(tuned, tuned_dtype, wide)
    if delta is tuned:  # already wide: the stored array itself
        delta = delta.copy()
    delta -= widen(base, base_dtype, wide)
    result: np.ndarray = delta.astype(PRECISIONS[precision], copy=False)
    return result


def numpy_svdvals(matrices: list[Matrix]) -> np.ndarray:
    """Singular values with numpy's LAPACK, in the matrices' precision, as float64."""
    stacked = matrices[0][None] if len(matrices) == 1 else np.stack(matrices)
    matrices.clear()
    return np.linalg.svd(stacked, compute_uv=False).astype(np.float64, copy=False)


def spectra(
    sigma: np.ndarray, shape: tuple[int, int], tolerance: RankTolerance, ranks: Sequence[int] = ()
) -> list[Spectrum]:
    """Summaries of a batch of singular values (``B x min(m, n)``) of ``m x n`` updates, with
    the energy share of the top r for each r of ``ranks``.

    Stable rank ‖ΔW‖_F² / ‖ΔW‖_2² = sum(sigma²) / sigma_max²; effective rank exp(H(p)),
    p_i = sigma_i / sum(sigma), 0 · log 0 = 0.  A zero update has rank, stable rank and
    effective rank 0.
    """
    s = sigma.astype(np.float64, copy=False)
    smax = s.max(axis=-1)
    if tolerance.atol is None:
        tol = smax * (max(shape) * tolerance.eps)
    else:
        tol = np.full_like(smax, tolerance.atol)
    rank = (s > tol[:, None]).sum(axis=-1)
    nonzero = smax > 0
    stable = np.where(nonzero, np.square(s).sum(axis=-1) / np.square(np.where(nonzero, smax, 1.0)), 0.0)
    total = s.sum(axis=-1, keepdims=True)
    p = s / np.where(total > 0, total, 1.0)
    xlogx = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    effective = np.where(nonzero, np.exp(-xlogx.sum(axis=-1)), 0.0)
    squares = np.square(s).cumsum(axis=-1)
    energy = squares / np.where(squares[:, -1:] > 0, squares[:, -1:], 1.0)
    energy[squares[:, -1] == 0] = 1.0
    shares = {r: energy[:, min(r, s.shape[-1]) - 1].tolist() for r in ranks}
    rows = zip(rank.tolist(), smax.tolist(), tol.tolist(), stable.tolist(), effective.tolist(), strict=True)
    return [
        Spectrum(shape, int(r), m, t, st, ef, {k: v[i] for k, v in shares.items()})
        for i, (r, m, t, st, ef) in enumerate(rows)
    ]


@dataclass
class SvdBatcher:
    """Decomposes updates as they come: at once (``budget_bytes`` 0) or in same-shape batches.

    ``m x n`` and ``n x m`` updates share a batch (a transpose has the same singular values).
    Updates wait until the pending ones reach ``budget_bytes``, then every pending batch is
    decomposed with ``svdvals``; :meth:`flush` decomposes the rest.  Results land in ``done``
    by name.
    """

    tolerance: RankTolerance
    budget_bytes: int = 0
    svdvals: SvdValues = numpy_svdvals
    #: The r of each ``Spectrum.energy`` share.
    ranks: tuple[int, ...] = ()
    done: dict[str, Spectrum] = field(default_factory=dict)
    _pending: dict[tuple[int, int], list[tuple[str, tuple[int, int], Matrix]]] = field(default_factory=dict)
    _pending_bytes: int = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def add(self, name: str, delta: Matrix) -> None:
        m, n = delta.shape
        matrix = delta if m <= n else delta.T
        self._pending.setdefault((min(m, n), max(m, n)), []).append((name, (m, n), matrix))
        self._pending_bytes += int(delta.nbytes)
        if self._pending_bytes >= self.budget_bytes:
            self.flush()

    def flush(self) -> None:
        for key, pending in self._pending.items():
            shapes = [(name, shape) for name, shape, _ in pending]
            matrices = [matrix for _, _, matrix in pending]
            pending.clear()
            sigma = self.svdvals(matrices)
            for (name, shape), spectrum in zip(
                shapes, spectra(sigma, key, self.tolerance, self.ranks), strict=True
            ):
                self.done[name] = replace(spectrum, shape=shape)
        self._pending.clear()
        self._pending_bytes = 0
