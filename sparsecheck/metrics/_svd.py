"""Singular values of weight updates, one matrix at a time or in same-shape batches.

The torch side of ``update_rank``: ΔW = tuned - base on the compute device, the spectrum
summaries of METRICS.md (numerical rank, stable rank, effective rank), and a batcher that
stacks same-shape updates for one ``torch.linalg.svdvals`` call.  Imported only when an
``update_rank`` check runs, so plain runs never import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

#: Pending updates a batch may hold before it is decomposed (a GPU-memory budget).
BATCH_BYTES = 2 << 30
PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class RankTolerance:
    """The rank rule: sigma_i counts when sigma_i > tol.

    By default tol = sigma_max · max(m, n) · eps(precision) (``numpy.linalg.matrix_rank``'s rule);
    ``atol`` gives an absolute tolerance instead.
    """

    precision: str
    atol: float | None = None

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.precision]

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
    base: torch.Tensor, tuned: torch.Tensor, device: torch.device, precision: str
) -> torch.Tensor:
    """ΔW = tuned - base as a fresh tensor of ``precision`` on ``device``.

    Each side travels in its stored dtype (bf16 is half the bytes of float32) and is widened
    there; the difference is taken in float64 when either side is stored in float64, so the
    result is rounded once.  The stored tensors are never written.
    """
    wide = torch.float64 if torch.float64 in (base.dtype, tuned.dtype) else PRECISIONS[precision]
    delta = tuned.to(device).to(wide, copy=True)
    delta.sub_(base.to(device))
    return delta.to(PRECISIONS[precision])


def spectra(
    sigma: torch.Tensor, shape: tuple[int, int], tolerance: RankTolerance, ranks: Sequence[int] = ()
) -> list[Spectrum]:
    """Summaries of a batch of singular values (``B x min(m, n)``) of ``m x n`` updates, with
    the energy share of the top r for each r of ``ranks``.

    Stable rank ‖ΔW‖_F² / ‖ΔW‖_2² = sum(sigma²) / sigma_max²; effective rank exp(H(p)),
    p_i = sigma_i / sum(sigma), 0 · log 0 = 0.  A zero update has rank, stable rank and
    effective rank 0.
    """
    s = sigma.to(torch.float64)
    smax = s.amax(dim=-1)
    if tolerance.atol is None:
        tol = smax * (max(shape) * torch.finfo(tolerance.dtype).eps)
    else:
        tol = torch.full_like(smax, tolerance.atol)
    rank = (s > tol[:, None]).sum(dim=-1)
    nonzero = smax > 0
    stable = torch.where(nonzero, s.square().sum(dim=-1) / torch.where(nonzero, smax, 1.0).square(), 0.0)
    total = s.sum(dim=-1, keepdim=True)
    p = s / torch.where(total > 0, total, 1.0)
    effective = torch.where(nonzero, torch.exp(-torch.special.xlogy(p, p).sum(dim=-1)), 0.0)
    squares = s.square().cumsum(dim=-1)
    energy = squares / torch.where(squares[:, -1:] > 0, squares[:, -1:], 1.0)
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
    decomposed; :meth:`flush` decomposes the rest.  Results land in ``done`` by name.
    """

    tolerance: RankTolerance
    budget_bytes: int = 0
    #: The r of each ``Spectrum.energy`` share.
    ranks: tuple[int, ...] = ()
    done: dict[str, Spectrum] = field(default_factory=dict)
    _pending: dict[tuple[int, int], list[tuple[str, tuple[int, int], torch.Tensor]]] = field(
        default_factory=dict
    )
    _pending_bytes: int = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def add(self, name: str, delta: torch.Tensor) -> None:
        m, n = delta.shape
        matrix = delta if m <= n else delta.mT
        self._pending.setdefault((min(m, n), max(m, n)), []).append((name, (m, n), matrix))
        self._pending_bytes += delta.numel() * delta.element_size()
        if self._pending_bytes >= self.budget_bytes:
            self.flush()

    def flush(self) -> None:
        for key, pending in self._pending.items():
            matrices = [matrix for _, _, matrix in pending]
            stacked = matrices[0].unsqueeze(0) if len(matrices) == 1 else torch.stack(matrices)
            del matrices
            shapes = [(name, shape) for name, shape, _ in pending]
            pending.clear()  # the unstacked updates go before the decomposition's workspace comes
            sigma = torch.linalg.svdvals(stacked)
            del stacked
            for (name, shape), spectrum in zip(
                shapes, spectra(sigma, key, self.tolerance, self.ranks), strict=True
            ):
                self.done[name] = replace(spectrum, shape=shape)
        self._pending.clear()
        self._pending_bytes = 0
