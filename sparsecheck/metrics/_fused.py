"""The fused compare engine: one compiled pass per chunk, where it is installed.

The optional C extension ``sparsecheck_fused`` (distribution ``sparsecheck-fused``, in
``native/sparsecheck-fused``) counts a same-dtype bfloat16, float16, float32 or float64 pair in
one pass per chunk: bits, |Δ|, the policy's count, the |Δ| histogram, the packed mask bits and
the bf16-rounded count.  It mirrors the numpy path of :mod:`sparsecheck.metrics._equality`,
which stays the fallback (other dtypes, mixed dtypes, no extension) and the reference the
tests hold it to, entry for entry.  ``SPARSECHECK_COMPARE=numpy`` turns the extension off.
"""

from __future__ import annotations

import mmap
import os
from types import ModuleType
from typing import NamedTuple

import numpy as np

#: Set to ``numpy`` to compare with the numpy path even where the extension is installed.
ENGINE_ENV = "SPARSECHECK_COMPARE"
_KINDS = {"bfloat16": 0, "float16": 1, "float32": 2, "float64": 3}
_POLICIES = {"exact": 0, "atol": 1, "rtol": 2}


class FusedCounts(NamedTuple):
    changed: int
    moved: int
    changed_if_bf16: int
    max_abs_delta: float


def extension() -> ModuleType | None:
    """The compiled extension, or None when it is not installed or turned off."""
    if os.environ.get(ENGINE_ENV, "").lower() == "numpy":
        return None
    try:
        import sparsecheck_fused
    except ImportError:
        return None
    module: ModuleType = sparsecheck_fused
    return module


def engine() -> str:
    """``fused`` or ``numpy``: what compares same-dtype float pairs in this process."""
    return "numpy" if extension() is None else "fused"


def compare(
    a: np.ndarray,
    b: np.ndarray,
    dtype: str,
    policy: str,
    tol: float,
    bf16_check: bool,
    packed: np.ndarray,
    histogram: np.ndarray,
) -> FusedCounts | None:
    """Compare flat stored arrays ``a`` and ``b`` of ``dtype``: fill ``packed`` (the mask bits),
    add to ``histogram`` (int64) and return the counts; None where the extension does not
    apply (not installed, another dtype, arrays not contiguous).  Arrays that view read-only
    file maps have their pages dropped behind the pass (a large tensor never has more than a
    few MiB of each side mapped; touched again, the pages come back from the file)."""
    module = extension()
    kind = _KINDS.get(dtype)
    if module is None or kind is None or not (a.flags.c_contiguous and b.flags.c_contiguous):
        return None
    drop = _file_mapped(a) and _file_mapped(b)
    counts = module.compare(a, b, kind, _POLICIES[policy], tol, bf16_check, packed, histogram, drop)
    return FusedCounts(*counts)


def _file_mapped(array: np.ndarray) -> bool:
    """Whether ``array`` views a read-only ``mmap`` (as the safetensors reader gives)."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj if base.readonly else None
    return isinstance(base, mmap.mmap) and memoryview(base).readonly
