"""Provenance: ``--hash`` puts a content hash of every tensor read in the JSON report, and
``sparsecheck verify REPORT.json CHECKPOINT`` says whether a checkpoint is one the report judged.

A tensor's hash is BLAKE2b (16 bytes) of its data as the reader returns it (stored bits; for
an adapter, base + ΔW; for a GGUF tensor, the dequantized values), taken in the read pass as
each tensor is read.  A checkpoint's entry in the report gets ``tensor_hashes`` (name → hash)
and ``content_hash``, the hash of those pairs in name order.  With ``--hash`` no result comes
from the cache: every tensor is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck._config import OptionRegistry
from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.errors import UsageError


def tensor_hash(array: np.ndarray) -> str:
    """The content hash of one tensor's data."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).data.cast("B"))
    return digest.hexdigest()


def content_hash(hashes: Mapping[str, str]) -> str:
    """One hash of a checkpoint's tensor hashes, in name order."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(hashes):
        digest.update(f"{name}\0{hashes[name]}\0".encode())
    return digest.hexdigest()


def report_entries(hashes: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, Any]]:
    """Reader id → the fields ``--hash`` adds to its entry in the report."""
    return {
        rid: {"content_hash": content_hash(by_name), "tensor_hashes": dict(sorted(by_name.items()))}
        for rid, by_name in hashes.items()
    }


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: the report's checkpoint that matched, or why none did."""

    matched: str | None
    tensors: int
    detail: str


def verify(report: Path, reader: CheckpointReader) -> Verdict:
    """Hash ``reader``'s tensors named in ``report`` and compare with each of its checkpoints."""
    entries = _hashed_entries(report)
    names = sorted({name for entry in entries for name in entry["tensor_hashes"]})
    stored = reader.tensors()
    aliases = reader.aliases()
    found: dict[str, str] = {}
    for name in names:
        target = aliases.get(name, name)
        if target in stored:
            found[name] = tensor_hash(reader.read(target))
            reader.release(target)
    closest: tuple[int, str] | None = None
    for entry in entries:
        expected: dict[str, str] = entry["tensor_hashes"]
        missing = [name for name in expected if name not in found]
        differing = [name for name in expected if name in found and found[name] != expected[name]]
        if not missing and not differing:
            return Verdict(str(entry.get("source")), len(expected), "")
        count = len(differing) + len(missing)
        problem = f"tensor {differing[0]!r} differs" if differing else f"tensor {missing[0]!r} is missing"
        more = f" ({count - 1} more)" if count > 1 else ""
        if closest is None or count < closest[0]:
            closest = (count, f"{problem}{more} from {entry.get('source')}, the closest checkpoint it judged")
    assert closest is not None, "a hashed report has entries"
    return Verdict(None, 0, closest[1])


def _hashed_entries(report: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{report}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{report}: not a JSON report: {exc}") from None
    checkpoints = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(checkpoints, list):
        raise UsageError(f"{report}: not a sparsecheck JSON report (no checkpoints list)")
    entries = [c for c in checkpoints if isinstance(c, dict) and isinstance(c.get("tensor_hashes"), dict)]
    if not entries:
        raise UsageError(f"{report}: has no tensor hashes: write it with --json FILE --hash")
    return entries


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    options.add(
        "--hash",
        "hash",
        is_flag=True,
        help="List a content hash of every tensor read in the JSON report (no cached results); "
        "`sparsecheck verify REPORT CHECKPOINT` checks a checkpoint against them.",
    )
