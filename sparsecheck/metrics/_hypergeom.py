"""The hypergeometric distribution: z-score and log10 upper-tail p-value, for huge populations.

X counts the marked items among ``drawn`` items taken without replacement from a population of
``population`` items, ``marked`` of them marked (METRICS.md, mask_overlap).  The probability of
one outcome uses Loader's saddle-point form (as R's ``dhyper`` does): deviance terms instead of
differences of huge log-factorials, so log P(X = x) keeps full precision for populations of
1e11 and more.  A tail is a sum of terms relative to its first term, from running products of
the exact term ratios, taken in growing blocks until the terms fall below 1e-17 of the sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_LN_2PI = math.log(2 * math.pi)
_LN_SQRT_2PI = 0.5 * _LN_2PI
#: A tail sum stops once its terms are below this fraction of the sum (natural log).
_LOG_NEGLIGIBLE = math.log(1e-17)
_FIRST_BLOCK = 64
_MAX_BLOCK = 1 << 20


def z_score(k: int, population: int, marked: int, drawn: int) -> float:
    """(k − E[X]) / sd(X); NaN when the variance is 0 (X is then certain)."""
    _check(population, marked, drawn)
    if population < 2:
        return math.nan
    mean = marked * drawn / population
    variance = (
        drawn
        * (marked / population)
        * ((population - marked) / population)
        * ((population - drawn) / (population - 1))
    )
    return (k - mean) / math.sqrt(variance) if variance > 0 else math.nan


def log10_upper_tail(k: int, population: int, marked: int, drawn: int) -> float:
    """log10 P(X ≥ k): 0.0 when k is at or below the support, −inf above it."""
    _check(population, marked, drawn)
    low, high = max(0, drawn - (population - marked)), min(marked, drawn)
    if k <= low:
        return 0.0
    if k > high:
        return -math.inf
    mode = (drawn + 1) * (marked + 1) // (population + 2)
    unmarked_rest = population - marked - drawn

    def up(x: np.ndarray) -> np.ndarray:  # log P(X = x + 1) / P(X = x)
        ratio: np.ndarray = np.log((marked - x) * (drawn - x)) - np.log((x + 1) * (unmarked_rest + x + 1))
        return ratio

    def down(x: np.ndarray) -> np.ndarray:  # log P(X = x − 1) / P(X = x)
        ratio: np.ndarray = np.log(x * (unmarked_rest + x)) - np.log((marked - x + 1) * (drawn - x + 1))
        return ratio

    if k > mode:  # terms fall from k upward: sum the upper tail itself
        log_tail = log_pmf(k, population, marked, drawn) + _log_relative_sum(k, high, up)
        return log_tail / math.log(10)
    # At or below the mode the tail is at least about one half: use the lower tail, which is
    # small and whose terms fall from k − 1 downward.
    lower = math.exp(log_pmf(k - 1, population, marked, drawn) + _log_relative_sum(k - 1, low, down))
    return math.log1p(-min(lower, 1.0)) / math.log(10)


def log_pmf(x: int, population: int, marked: int, drawn: int) -> float:
    """log P(X = x) (natural log; −inf outside the support)."""
    _check(population, marked, drawn)
    unmarked = population - marked
    if x < max(0, drawn - unmarked) or x > min(marked, drawn):
        return -math.inf
    if drawn == 0 or drawn == population:
        return 0.0
    p = drawn / population
    q = (population - drawn) / population
    return (
        _log_binomial_pmf(x, marked, p, q)
        + _log_binomial_pmf(drawn - x, unmarked, p, q)
        - _log_binomial_pmf(drawn, population, p, q)
    )


def _check(population: int, marked: int, drawn: int) -> None:
    if not (0 <= marked <= population and 0 <= drawn <= population):
        raise ValueError(f"need 0 <= marked, drawn <= population; got {marked}, {drawn}, {population}")


def _log_relative_sum(start: int, end: int, log_ratio: Callable[[np.ndarray], np.ndarray]) -> float:
    """log Σ t(x)/t(start) for x from ``start`` to ``end`` (either direction), where
    ``log_ratio(x)`` is log t(next x)/t(x) and the terms fall along the way."""
    step = 1 if end >= start else -1
    total = last = 0.0
    x, block = start, _FIRST_BLOCK
    while x != end and last >= total + _LOG_NEGLIGIBLE:
        count = min(block, abs(end - x))
        logs = last + np.cumsum(log_ratio(x + step * np.arange(count, dtype=np.float64)))
        top = float(logs[0])  # the terms fall: the block's first is its largest
        total = float(np.logaddexp(total, top + math.log(float(np.exp(logs - top).sum()))))
        last = float(logs[-1])
        x += step * count
        block = min(2 * block, _MAX_BLOCK)
    return total


def _log_binomial_pmf(x: int, n: int, p: float, q: float) -> float:
    """log of the binomial probability of x in n trials (Loader's ``dbinom_raw``)."""
    if x == 0:
        return 0.0 if n == 0 else (-_deviance(n, n * q) - n * p if p < 0.1 else n * math.log(q))
    if x == n:
        return -_deviance(n, n * p) - n * q if q < 0.1 else n * math.log(p)
    log_c = _stirling_error(n) - _stirling_error(x) - _stirling_error(n - x)
    log_c -= _deviance(x, n * p) + _deviance(n - x, n * q)
    return log_c - 0.5 * (_LN_2PI + math.log(x) + math.log1p(-x / n))


def _stirling_error(n: int) -> float:
    """log(n!) − log(√(2πn) (n/e)^n), for n ≥ 1."""
    if n <= 15:
        return math.lgamma(n + 1) - (n + 0.5) * math.log(n) + n - _LN_SQRT_2PI
    nn = float(n) * n
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _deviance(x: float, mean: float) -> float:
    """x log(x / mean) + mean − x, without cancellation when x is near mean."""
    if abs(x - mean) < 0.1 * (x + mean):
        v = (x - mean) / (x + mean)
        total = (x - mean) * v
        term, v2 = 2 * x * v, v * v
        for j in range(1, 1000):
            term *= v2
            updated = total + term / (2 * j + 1)
            if updated == total:
                return updated
            total = updated
    return x * math.log(x / mean) + mean - x
