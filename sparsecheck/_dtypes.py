"""Dtypes without torch: canonical names, numpy storage, exact conversions to float.

Checkpoints are compared with numpy on the stored bits; torch is imported only when a metric
asks for a tensor.  Dtypes numpy lacks are held as unsigned integers: bfloat16 as uint16 bits,
the 8-bit floats as their byte, the 4- and 6-bit floats as one code per entry (a uint8,
unpacked from the file); all widen to float32 exactly, the small floats through a table of
every code built from the format's bit layout (names follow torch and ml_dtypes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sparsecheck.errors import UsageError

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
    "float8_e4m3fnuz": np.dtype(np.uint8),
    "float8_e5m2fnuz": np.dtype(np.uint8),
    "float8_e8m0fnu": np.dtype(np.uint8),
    "float6_e2m3fn": np.dtype(np.uint8),
    "float6_e3m2fn": np.dtype(np.uint8),
    "float4_e2m1fn": np.dtype(np.uint8),
    "complex64": np.dtype(np.complex64),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}


@dataclass(frozen=True)
class Minifloat:
    """The bit layout of a float of at most 8 bits: sign (unless unsigned), exponent, mantissa.

    ``specials``: ``ieee`` (all-ones exponent: infinity, or NaN with a mantissa), ``fn`` (no
    infinity; all-ones exponent and mantissa is NaN), ``fnuz`` (no infinity, no negative zero:
    the negative-zero code is the one NaN) or ``finite`` (every code a number).
    """

    exponent: int
    mantissa: int
    bias: int
    specials: str
    signed: bool = True

    @property
    def bits(self) -> int:
        return self.signed + self.exponent + self.mantissa


MINIFLOATS: dict[str, Minifloat] = {
    "float8_e4m3fn": Minifloat(4, 3, 7, "fn"),
    "float8_e5m2": Minifloat(5, 2, 15, "ieee"),
    "float8_e4m3fnuz": Minifloat(4, 3, 8, "fnuz"),
    "float8_e5m2fnuz": Minifloat(5, 2, 16, "fnuz"),
    "float8_e8m0fnu": Minifloat(8, 0, 127, "fn", signed=False),
    "float6_e2m3fn": Minifloat(2, 3, 1, "finite"),
    "float6_e3m2fn": Minifloat(3, 2, 3, "finite"),
    "float4_e2m1fn": Minifloat(2, 1, 1, "finite"),
}
FLOATS = frozenset({"bfloat16", "float16", "float32", "float64", *MINIFLOATS})
#: Bits of precision (mantissa + implicit bit) of each float dtype.
PRECISION = {
    **{name: layout.mantissa + 1 for name, layout in MINIFLOATS.items()},
    "bfloat16": 8,
    "float16": 11,
    "float32": 24,
    "float64": 53,
}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits(array: np.ndarray) -> np.ndarray:
    """The stored bits as unsigned integers (a view, no copy)."""
    return array.view(_UINT[array.dtype.itemsize])


def width(dtype: str) -> int:
    """Bits of one stored entry (4 for float4, 6 for float6; else the storage's)."""
    layout = MINIFLOATS.get(dtype)
    return layout.bits if layout else STORAGE[dtype].itemsize * 8


def stored_bytes(dtype: str, numel: int) -> int | None:
    """Bytes ``numel`` entries of ``dtype`` take in a file, packed; None unless a whole number."""
    total = numel * width(dtype)
    return None if total % 8 else total // 8


def sign_mask(dtype: str) -> int:
    """The sign bit of a float dtype, as an integer of its storage; for an unsigned format the
    bit above its width, so ``sign_mask(dtype) - 1`` is always the magnitude bits."""
    layout = MINIFLOATS.get(dtype)
    return 1 << (width(dtype) - (layout is None or layout.signed))


@functools.cache
def minifloat_table(name: str) -> np.ndarray:
    """The float32 value of every code of a small float (exact: all of them are float32s)."""
    layout = MINIFLOATS[name]
    codes = np.arange(1 << layout.bits, dtype=np.int64)
    top = (1 << layout.exponent) - 1
    exponent = (codes >> layout.mantissa) & top
    mantissa = (codes & ((1 << layout.mantissa) - 1)).astype(np.float64)
    fraction = mantissa / (1 << layout.mantissa)
    subnormal = (exponent == 0) & (layout.mantissa > 0)
    magnitude = np.where(
        subnormal, np.ldexp(fraction, 1 - layout.bias), np.ldexp(1 + fraction, exponent - layout.bias)
    )
    negative = layout.signed & (codes >> (layout.bits - 1)).astype(bool)
    values = np.where(negative, -magnitude, magnitude)
    all_ones = exponent == top
    if layout.specials == "ieee":
        values[all_ones] = np.where(mantissa[all_ones] == 0, np.copysign(np.inf, values[all_ones]), np.nan)
    elif layout.specials == "fn":
        values[all_ones & (mantissa == (1 << layout.mantissa) - 1)] = np.nan
    elif layout.specials == "fnuz":
        values[1 << (layout.bits - 1)] = np.nan
    table = values.astype(np.float32)
    table.flags.writeable = False
    return table


def unpack_codes(packed: np.ndarray, dtype: str, numel: int) -> np.ndarray:
    """The codes of a 4- or 6-bit float dtype, one uint8 per entry, from its packed bytes.

    Entries fill the bytes as a little-endian bit stream: entry ``i`` takes bits
    ``[i·w, (i+1)·w)``, so a float4 byte holds entry ``2k`` in its low nibble.
    """
    bits = width(dtype)
    if bits == 4:
        codes = np.empty((packed.size, 2), np.uint8)
        np.bitwise_and(packed, 0x0F, out=codes[:, 0])
        np.right_shift(packed, 4, out=codes[:, 1])
    elif bits == 6:
        b = packed.reshape(-1, 3)
        codes = np.empty((b.shape[0], 4), np.uint8)
        codes[:, 0] = b[:, 0] & 0x3F
        codes[:, 1] = (b[:, 0] >> 6) | ((b[:, 1] & 0x0F) << 2)
        codes[:, 2] = (b[:, 1] >> 4) | ((b[:, 2] & 0x03) << 4)
        codes[:, 3] = b[:, 2] >> 2
    else:
        raise ValueError(f"{dtype} is not a packed dtype")
    return codes.reshape(-1)[:numel]


def widen(array: np.ndarray, dtype: str, wide: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Stored values of ``dtype`` as ``wide`` (float32 or float64), exactly.

    With ``out`` (a ``wide`` buffer at least ``array.size`` long) the values are written into
    its start, which is returned, unless ``array`` is already ``wide`` (then it is returned).
    """
    if np.dtype(STORAGE[dtype]) == wide:
        return array
    if dtype == "complex64":
        raise UsageError("complex64 values have no real magnitude to compare; leave them out (exclude:)")
    target = np.empty(array.shape, wide) if out is None else out[: array.size].reshape(array.shape)
    if dtype == "bfloat16":
        if wide == np.float32:
            np.left_shift(array, 16, dtype=np.uint32, out=target.view(np.uint32))
        else:
            target[...] = np.left_shift(array, 16, dtype=np.uint32).view(np.float32)
    elif dtype in MINIFLOATS:
        target[...] = minifloat_table(dtype)[array]
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
    """The array as a torch tensor of ``dtype`` (zero-copy; needs the ``torch`` extra)."""
    import warnings

    from sparsecheck._extras import require

    require("torch", "a metric asking for torch tensors (TensorGroup.tensor)")
    import torch

    if width(dtype) < 8 or not hasattr(torch, dtype):
        raise UsageError(f"torch has no {dtype} tensors; read them as numpy arrays (TensorGroup.array)")

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
