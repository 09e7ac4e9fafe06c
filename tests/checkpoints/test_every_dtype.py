"""Every dtype safetensors 0.8 reads: decoded with numpy tables, compared, counted.

The small-float tables are checked against torch's conversions where torch has the dtype and
against the OCP MX values elsewhere; files are written by the safetensors library itself
(the float6 dtypes, which its writer lacks, by hand) with planted changes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch

from sparsecheck._dtypes import MINIFLOATS, minifloat_table, unpack_codes, width
from sparsecheck.checkpoints._safetensors import DTYPES, SafetensorsFile
from sparsecheck.errors import CheckpointError
from sparsecheck.metrics._maskfile import popcount
from sparsecheck.testing import run_checks

#: The safetensors writer's name of each dtype code (None: written by hand).
WRITER_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16", "U32": "uint32",
    "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16", "BF16": "bfloat16",
    "F32": "float32", "F64": "float64", "C64": "complex64", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu", "F4": "float4_e2m1fn_x2", "F6_E2M3": None, "F6_E3M2": None,
}  # fmt: skip
SHAPE = (4, 6)
CHANGED = 5


@pytest.mark.parametrize("name", sorted(n for n in MINIFLOATS if hasattr(torch, n)))
def test_float8_tables_match_torch(name: str) -> None:
    expected = torch.arange(256, dtype=torch.uint8).view(getattr(torch, name)).float().numpy()
    ours = minifloat_table(name)
    assert np.array_equal(ours, expected, equal_nan=True)
    numbers = ~np.isnan(expected)
    assert np.array_equal(np.signbit(ours[numbers]), np.signbit(expected[numbers]))


def test_float4_and_float6_tables_hold_the_mx_values() -> None:
    e2m1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert minifloat_table("float4_e2m1fn").tolist() == e2m1 + [-v for v in e2m1]
    for name, top, smallest in (("float6_e2m3fn", 7.5, 0.125), ("float6_e3m2fn", 28.0, 0.0625)):
        table = minifloat_table(name)
        assert table.size == 64 and not np.isnan(table).any()
        assert table.max() == top and table.min() == -top and table[1] == smallest
        assert np.all(np.diff(table[:32]) > 0)  # codes of one sign are ordered by value


@pytest.mark.parametrize("name", ["float4_e2m1fn", "float6_e2m3fn", "float6_e3m2fn"])
def test_unpacking_reads_a_little_endian_bit_stream(name: str) -> None:
    bits = width(name)
    codes = np.random.default_rng(bits).integers(0, 1 << bits, 24, dtype=np.uint8)
    packed = np.frombuffer(_pack(codes, bits), np.uint8)
    assert np.array_equal(unpack_codes(packed, name, codes.size), codes)


def test_popcount_counts_the_first_bits_only() -> None:
    packed = np.random.default_rng(0).integers(0, 256, 1001, dtype=np.uint8)
    for numel in (0, 7, 64, 65, 8000, 8005):
        assert popcount(packed, numel) == int(np.unpackbits(packed, bitorder="little")[:numel].sum())


def _entries(code: str, seed: int) -> tuple[bytes, np.ndarray]:
    """Random stored bytes of a ``SHAPE`` tensor of ``code`` (valid numbers only) and its codes."""
    dtype = DTYPES[code]
    rng = np.random.default_rng(seed)
    numel = SHAPE[0] * SHAPE[1]
    if dtype in MINIFLOATS:
        table = minifloat_table(dtype)
        codes = rng.choice(np.flatnonzero(np.isfinite(table)), numel).astype(np.uint8)
        return (_pack(codes, width(dtype)) if width(dtype) < 8 else codes.tobytes()), codes
    if dtype == "bool":
        values = rng.integers(0, 2, numel).astype(np.bool_)
    elif dtype == "bfloat16":
        values = rng.integers(0x3C00, 0x4000, numel, dtype=np.uint16)  # ordinary numbers
    elif dtype == "complex64":
        values = rng.standard_normal(2 * numel).astype(np.float32).view(np.complex64)
    else:
        values = rng.integers(0, 100, numel).astype(np.dtype(dtype))
    return values.tobytes(), values


def _pack(codes: np.ndarray, bits: int) -> bytes:
    """Codes of ``bits`` bits as a little-endian bit stream (entry 0 in the lowest bits)."""
    stream = ((codes[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(stream, bitorder="little").tobytes()


def _changed(code: str) -> bytes:
    """The base's entries of ``code`` with the first ``CHANGED`` set to other numbers."""
    dtype = DTYPES[code]
    mixed = _entries(code, 0)[1].copy()
    if dtype == "bool":
        mixed[:CHANGED] = ~mixed[:CHANGED]
    elif dtype in MINIFLOATS:
        table = minifloat_table(dtype)
        finite = np.flatnonzero(np.isfinite(table))
        for i in range(CHANGED):
            mixed[i] = finite[table[finite] != table[mixed[i]]][0]
        if width(dtype) < 8:
            return _pack(mixed, width(dtype))
    else:
        mixed[:CHANGED] += 1
    return mixed.tobytes()


def _write(path: Path, tensors: dict[str, tuple[str, bytes]]) -> Path:
    """A safetensors file: by the library where its writer knows the dtype, else by hand."""
    by_library = {n: t for n, t in tensors.items() if WRITER_NAMES[t[0]] is not None}
    buffers = {n: np.frombuffer(data, np.uint8).copy() for n, (_, data) in by_library.items()}
    specs = {
        n: safetensors.TensorSpec(
            dtype=WRITER_NAMES[code],
            shape=[SHAPE[0], SHAPE[1] // 2] if code == "F4" else list(SHAPE),
            data_ptr=buffers[n].ctypes.data,
            data_len=buffers[n].nbytes,
        )
        for n, (code, _) in by_library.items()
    }
    written = bytes(safetensors.serialize(specs))
    header_length = struct.unpack("<Q", written[:8])[0]
    header = json.loads(written[8 : 8 + header_length])
    body = bytearray(written[8 + header_length :])
    for name, (code, data) in tensors.items():
        if name not in by_library:
            offsets = [len(body), len(body) + len(data)]
            header[name] = {"dtype": code, "shape": list(SHAPE), "data_offsets": offsets}
            body += data
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(body))
    return path


def test_every_safetensors_dtype_is_read_and_compared(tmp_path: Path) -> None:
    base = {f"t.{code}": (code, _entries(code, 0)[0]) for code in DTYPES}
    tuned = {name: (code, _changed(code)) for name, (code, _) in base.items()}
    files = {"base": _write(tmp_path / "base.safetensors", base)}
    files["tuned"] = _write(tmp_path / "tuned.safetensors", tuned)
    read = SafetensorsFile(files["base"])
    for name, (code, _) in base.items():
        assert read.tensors[name].meta.dtype == DTYPES[code]
        array = read.array(name)
        assert array.shape == SHAPE and not array.flags.writeable
        assert np.array_equal(array.reshape(-1), _entries(code, 0)[1]), code
    args = {"base": "base", "tuned": "tuned", "policy": "exact"}
    checks = [
        {"id": "real", "metric": "update_sparsity", "args": {**args, "exclude": ["t.C64"]}},
        {"id": "complex", "metric": "update_sparsity", "args": {**args, "include": ["t.C64"]}},
    ]
    outcomes = run_checks(tmp_path, files, checks)
    result = outcomes["real"].result
    assert result is not None, outcomes["real"].message
    real = [name for name in base if name != "t.C64"]
    assert {name: result.groups["tensor"][name]["changed"] for name in real} == dict.fromkeys(real, CHANGED)
    assert outcomes["complex"].error_kind == "usage"
    assert outcomes["complex"].message.startswith("tensor 't.C64': complex64 entries have no real")


def test_a_packed_tensor_must_fill_whole_bytes(tmp_path: Path) -> None:
    header = json.dumps({"odd": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    with pytest.raises(CheckpointError, match=r"odd.safetensors: corrupt safetensors file: tensor 'odd': F4"):
        SafetensorsFile(path)
