"""Magnitude strata of base weights, for mask_overlap's magnitude-matched baseline.

A stratum holds the entries whose base value has one binary exponent (METRICS.md,
mask_overlap): zeros are one stratum, inf and NaN one, subnormals share their dtype's exponent
field 0, the sign is ignored, and the stratum is the unbiased exponent, so equal exponents of
different dtypes share one.  Non-float dtypes go through float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparsecheck._dtypes import bits, sign_mask
from sparsecheck.metrics._equality import CHUNK

#: Float dtype → (shift, mask, bias) of its exponent field, and whether all ones there is inf/NaN.
_EXPONENTS: dict[str, tuple[int, int, int, bool]] = {
    "bfloat16": (7, 0xFF, 127, True),
    "float16": (10, 0x1F, 15, True),
    "float32": (23, 0xFF, 127, True),
    "float64": (52, 0x7FF, 1023, True),
    "float8_e5m2": (2, 0x1F, 15, True),
    "float8_e4m3fn": (3, 0xF, 7, False),
}
ZERO_STRATUM, NONFINITE_STRATUM = 0, 1
#: Stratum of unbiased exponent e is e + this (e from −1023 to 1023).
_EXPONENT_OFFSET = 2 + 1023
STRATA = _EXPONENT_OFFSET + 1024


def stratum_ids(values: np.ndarray, dtype: str) -> np.ndarray:
    """The stratum of each stored value: the definition, entry by entry."""
    if dtype not in _EXPONENTS:
        values, dtype = values.astype(np.float64), "float64"
    shift, width, bias, ieee = _EXPONENTS[dtype]
    raw = bits(values)
    exponent = ((raw >> shift) & width).astype(np.intp)
    ids = exponent + (_EXPONENT_OFFSET - bias)
    ids[(raw & raw.dtype.type(sign_mask(dtype) - 1)) == 0] = ZERO_STRATUM
    if ieee:
        ids[exponent == width] = NONFINITE_STRATUM
    return ids


@dataclass(frozen=True)
class Strata:
    """One tensor's entry counts per non-empty magnitude stratum, and |m1∧m2| in all."""

    ids: np.ndarray
    changed_a: np.ndarray
    changed_b: np.ndarray
    total: np.ndarray
    both: int


def stratum_counts(base: np.ndarray, dtype: str, mask_a: np.ndarray, mask_b: np.ndarray) -> Strata:
    """Count |m1∩b|, |m2∩b| and |b| for every stratum b of ``base`` (bool masks m1, m2).

    A chunk at a time, one bincount over the 16-bit key (in m1, in m2, exponent field); the
    entries whose exponent field is 0 are split into zeros and subnormals only in chunks that
    have some.  Agrees with counting :func:`stratum_ids` entry by entry.
    """
    field = dtype if dtype in _EXPONENTS else "float64"
    shift, width, bias, ieee = _EXPONENTS[field]
    field_bits = width.bit_length()
    magnitude = sign_mask(field) - 1
    flat, flat_a, flat_b = base.reshape(-1), mask_a.reshape(-1), mask_b.reshape(-1)
    #: Rows: 2·(in m1) + (in m2); columns: the exponent field.
    by_field = np.zeros((4, width + 1), dtype=np.int64)
    zeros = np.zeros(4, dtype=np.int64)
    for start in range(0, flat.size, CHUNK):
        span = slice(start, start + CHUNK)
        raw = bits(flat[span] if field == dtype else flat[span].astype(np.float64))
        key = (raw >> shift).astype(np.uint16)
        key &= width
        key |= np.left_shift(flat_b[span].view(np.uint8), field_bits, dtype=np.uint16)
        key |= np.left_shift(flat_a[span].view(np.uint8), field_bits + 1, dtype=np.uint16)
        counts = np.bincount(key, minlength=4 << field_bits).reshape(4, width + 1)
        by_field += counts
        if counts[:, 0].any():
            zero = np.flatnonzero((raw & raw.dtype.type(magnitude)) == 0)
            zeros += np.bincount(key[zero] >> field_bits, minlength=4)
    ids = np.arange(width + 1) + (_EXPONENT_OFFSET - bias)
    if ieee:
        ids[width] = NONFINITE_STRATUM
    by_stratum = np.zeros((STRATA, 4), dtype=np.int64)  # columns: (in m1, in m2) = 00, 01, 10, 11
    by_stratum[ids] += by_field.T
    by_stratum[ids[0]] -= zeros
    by_stratum[ZERO_STRATUM] += zeros
    total = by_stratum.sum(axis=1)
    kept = np.flatnonzero(total)
    changed_a = by_stratum[:, 2] + by_stratum[:, 3]
    changed_b = by_stratum[:, 1] + by_stratum[:, 3]
    return Strata(kept, changed_a[kept], changed_b[kept], total[kept], int(by_stratum[:, 3].sum()))
