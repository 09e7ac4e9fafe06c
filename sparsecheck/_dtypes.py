"""Dtypes without torch: canonical names, numpy storage, exact conversions to float.

Checkpoints are compared with numpy on the stored bits; torch is imported only when a metric
asks for a tensor.  Dtypes numpy lacks (bfloat16, float8) are held as unsigned integers of
the same width and widened to float32 exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Canonical name → numpy dtype that stores it (bits only, for bfloat16 and float8).
STORAGE: dict[str, np.dtype] = {
    "bfloat16": np.dtype(np.uint16),
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float8_e4m3fn": np.dtype(np.uint8),
    "float8_e5m2": np.dtype(np.uint8),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}
FLOATS = frozenset({"bfloat16", "float16", "float32", "float64", "float8_e4m3fn", "float8_e5m2"})
#: Bits of precision (mantissa + implicit bit) of each float dtype.
PRECISION = {
    "float8_e5m2": 3,
    "float8_e4m3fn": 4,
    "bfloat16": 8,
    "float16": 11,
    "float32": 24,
    "float64": 53,
}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits(array: np.ndarray) -> np.ndarray:
    """The stored bits as unsigned integers (a view, no copy)."""
    return array.view(_UINT[array.dtype.itemsize])


def sign_mask(dtype: str) -> int:
    """The sign bit of a float dtype, as an integer of its width."""
    return 1 << (STORAGE[dtype].itemsize * 8 - 1)


def _float8_table(name: str) -> np.ndarray:
    import torch

    codes = torch.arange(256, dtype=torch.uint8)
    return codes.view(getattr(torch, name)).float().numpy()


def widen(array: np.ndarray, dtype: str, wide: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Stored values of ``dtype`` as ``wide`` (float32 or float64), exactly.

    With ``out`` (a ``wide`` buffer at least ``array.size`` long) the values are written into
    its start, which is returned, unless ``array`` is already ``wide`` (then it is returned).
    """
    if np.dtype(STORAGE[dtype]) == wide:
        return array
    target = np.empty(array.shape, wide) if out is None else out[: array.size].reshape(array.shape)
    if dtype == "bfloat16":
        if wide == np.float32:
            np.left_shift(array, 16, dtype=np.uint32, out=target.view(np.uint32))
        else:
            target[...] = np.left_shift(array, 16, dtype=np.uint32).view(np.float32)
    elif dtype.startswith("float8"):
        target[...] = _float8_table(dtype)[array]
    else:
        target[...] = array
    return target


def compute_dtype(a: str, b: str) -> np.dtype:
    """float64 when either side is float64, else float32 (METRICS.md)."""
    return np.dtype(np.float64) if "float64" in (a, b) else np.dtype(np.float32)


def round_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Round float32/float64 values to bfloat16 (nearest, ties to even); return the bits.

    float64 values are rounded directly: first to float32 rounding to odd (exact for the second
    rounding, as float32 keeps 16 more bits than bfloat16), never to float32's nearest, whose
    ties would be rounded a second time.
    """
    if values.dtype == np.float64:
        f32 = _float32_round_to_odd(values)
    else:
        f32 = values.astype(np.float32, copy=False)
    u = f32.view(np.uint32)
    rounded = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    return np.where(np.isnan(f32), np.uint16(0x7FC0), rounded)


def _float32_round_to_odd(values: np.ndarray) -> np.ndarray:
    """float64 ``values`` as float32, rounded to odd: the neighbour with an odd last bit when
    inexact (beyond float32's range: inf, which bfloat16 rounds to as well)."""
    with np.errstate(over="ignore"):
        f32 = values.astype(np.float32)
    back = f32.astype(np.float64)
    u = f32.view(np.uint32)
    fix = (back != values) & np.isfinite(f32) & ((u & 1) == 0)
    toward_zero = fix & (np.abs(back) > np.abs(values))
    u[toward_zero] -= np.uint32(1)
    u[fix & ~toward_zero] += np.uint32(1)
    return f32


def to_torch(array: np.ndarray, dtype: str) -> torch.Tensor:
    """The array as a torch tensor of ``dtype`` (zero-copy; imports torch)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only mapped arrays are never written
        tensor = torch.from_numpy(array)
    target = getattr(torch, dtype)
    return tensor if tensor.dtype == target else tensor.view(target)


def from_torch_dtype(dtype: torch.dtype) -> str:
    """Canonical name of a torch dtype (``torch.bfloat16`` → ``bfloat16``)."""
    name = str(dtype).removeprefix("torch.")
    if name not in STORAGE:
        raise ValueError(f"unsupported dtype {name}")
    return name
