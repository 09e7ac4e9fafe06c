"""The work folder: what spec steps produce, under ``<cache dir>/work/<step id>-<key>/``.

``key`` hashes everything a step's output depends on (see :func:`work_key`), so an unchanged
step finds its folder and reuses it, and a changed input or setting gets a new folder.  A step
builds its output in a temporary folder beside the final one (``.<step id>-<key>.<random>``) and
renames it into place when complete, with its record (``step.json``) inside, so a folder under
its final name is always complete, and a crashed step leaves only a temporary folder that is
never reused.  Nothing is written anywhere else.  ``--cache-clear`` and ``--no-cache`` leave
the work folder alone (remove ``<cache dir>/work`` to retrain everything).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sparsecheck._atomic import write_text_atomic
from sparsecheck._cachedir import make_cache_dir

WORK = "work"
RECORD = "step.json"
#: Bumped when what a step writes changes, so older outputs are not reused.
LAYOUT_VERSION = 1


def work_key(material: Mapping[str, Any]) -> str:
    """A short hash of ``material`` (JSON-able), the identity of a step's output."""
    text = json.dumps({"layout": LAYOUT_VERSION, **material}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (mask files are small: one bit per entry)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class WorkFolder:
    """The step outputs under ``<cache dir>/work``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / WORK

    def folder(self, step_id: str, key: str) -> Path:
        return self.root / f"{step_id}-{key}"

    def completed(self, step_id: str, key: str) -> dict[str, Any] | None:
        """The record of the complete output of ``step_id`` with ``key``, or None when there is
        none (or when one of the outputs it lists was deleted since)."""
        folder = self.folder(step_id, key)
        try:
            record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
            present = all((folder / relative).exists() for relative in record["outputs"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return record if present else None

    @contextlib.contextmanager
    def build(self, step_id: str, key: str) -> Iterator[Path]:
        """A fresh temporary folder to write the output in; on a clean exit it becomes the
        step's folder (replacing a broken one; an equal one finished meanwhile wins)."""
        make_cache_dir(self.root.parent)
        self.root.mkdir(exist_ok=True)
        final = self.folder(step_id, key)
        temporary = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{final.name}."))
        try:
            yield temporary
            if final.exists() and self.completed(step_id, key) is None:
                shutil.rmtree(final)
            try:
                os.rename(temporary, final)
            except OSError:
                if self.completed(step_id, key) is None:
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    @staticmethod
    def write_record(folder: Path, record: Mapping[str, Any]) -> None:
        """Write a step's record; it is what marks its folder complete, so it comes last."""
        write_text_atomic(folder / RECORD, json.dumps(record, indent=2, default=str) + "\n")
