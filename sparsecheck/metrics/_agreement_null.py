"""The null of ``mask_agreement``: N independent runs, run j changing as many entries of each
stratum as it did (a_bj of the t_b entries of stratum b), placed uniformly at random within it
(METRICS.md, mask_agreement).  One stratum of all entries is the uniform null.

Under it an entry of stratum b is in run j's mask with probability p_bj = a_bj / t_b,
independently across runs, so the number of runs that changed it is Poisson-binomial: the
expected count distribution is exact.  The number X of entries changed in all N runs has mean
Σ_b t_b q_b (q_b = Π_j p_bj) and the exact variance of fixed-size placement.  Its upper tail is
bounded by the Chernoff bound of independent Bernoulli(q_b) entries, which holds under
fixed-size placement too (the indicators are negatively associated): the p-value reported is
that bound, a valid and conservative p-value.
"""

from __future__ import annotations

import math

import numpy as np

_BISECTIONS = 200


def count_distribution(total: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """Expected number of entries changed by exactly k runs, k = 0 … N.

    ``total``: entries per stratum, shape (S,); ``changed``: entries each run changed per stratum,
    shape (S, N).
    """
    p = changed / total[:, None]
    strata, runs = changed.shape
    dist = np.zeros((strata, runs + 1))
    dist[:, 0] = 1.0
    for j in range(runs):
        moved = dist[:, :-1] * p[:, j : j + 1]
        dist *= 1.0 - p[:, j : j + 1]
        dist[:, 1:] += moved
    expected: np.ndarray = (total[:, None] * dist).sum(axis=0)
    return expected


def all_changed_moments(total: np.ndarray, changed: np.ndarray) -> tuple[float, float]:
    """Mean and variance of X, the entries changed in all N runs, under the null."""
    t = total.astype(np.float64)
    a = changed.astype(np.float64)
    q = np.prod(a / t[:, None], axis=1)
    mean = float(np.sum(t * q))
    # Per stratum Var = t·q·(1−q) + t(t−1)·(Π_j r_j − q²), r_j = a_j(a_j−1) / (t(t−1)) the chance
    # that two given entries are both in run j's mask; Π_j r_j − q² = q²·(Π_j (1 − c_j) − 1) with
    # c_j = (t − a_j) / (a_j (t − 1)), computed as an expm1 of a log1p sum to keep its precision.
    live = (q > 0) & (t > 1)
    tl, al, ql = t[live], a[live], q[live]
    c = (tl[:, None] - al) / (al * (tl[:, None] - 1))
    with np.errstate(divide="ignore"):
        shrink = np.expm1(np.sum(np.log1p(-c), axis=1))
    variance = float(np.sum(tl * ql * (1 - ql) + tl * (tl - 1) * ql * ql * shrink))
    return mean, max(variance, 0.0)


def log10_all_changed_bound(observed: int, total: np.ndarray, changed: np.ndarray) -> float:
    """log10 of the Chernoff bound on P(X ≥ observed) under the null: 0 at or below the mean,
    −inf above what the null can reach (Σ_b min_j a_bj)."""
    t = total.astype(np.float64)
    q = np.prod(changed / t[:, None], axis=1)
    sure = float(t[q >= 1].sum())
    middle = (q > 0) & (q < 1)
    tm, qm = t[middle], q[middle]
    reach = sure + float(tm.sum())
    if observed <= float(np.sum(t * q)):
        return 0.0
    if observed > int(changed.min(axis=1).sum()):  # more than the smallest masks hold
        return -math.inf
    if observed == reach:  # the limit s → ∞: every entry that can be in all masks is
        return float(np.sum(tm * np.log10(qm)))
    logit = np.log(qm) - np.log1p(-qm)
    target = observed - sure

    def expected_at(s: float) -> float:  # d/ds of log E[e^{sX}] over the middle strata
        return float(np.sum(tm / (1.0 + np.exp(-(s + logit)))))

    low, high = 0.0, 1.0
    while expected_at(high) < target:
        low, high = high, 2 * high
    for _ in range(_BISECTIONS):
        mid = (low + high) / 2
        if expected_at(mid) < target:
            low = mid
        else:
            high = mid
    s = high
    log_mgf = sure * s + float(np.sum(tm * (np.log1p(-qm) + np.logaddexp(0.0, s + logit))))
    return min(0.0, (log_mgf - s * observed) / math.log(10))
