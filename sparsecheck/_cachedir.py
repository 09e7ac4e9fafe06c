"""Where the cache folder goes, and how it is marked as a cache.

The default is ``.sparsecheck_cache`` in the folder sparsecheck runs from, unless that folder is
inside a checkpoint folder: sparsecheck never writes into one, so the cache then goes to the
user's cache folder (``$XDG_CACHE_HOME/sparsecheck/runs/<hash of the folder>``).  A cache folder
gets a ``CACHEDIR.TAG`` (so backup tools skip it) and a ``.gitignore`` (so git does).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_CACHE_DIR = ".sparsecheck_cache"
#: Files whose presence makes a folder a checkpoint (weights, an adapter, a sharded index).
_CHECKPOINT_MARKERS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_config.json",
)
_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by sparsecheck.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def checkpoint_folder_around(folder: Path) -> Path | None:
    """``folder`` or its nearest ancestor that is a checkpoint folder, if any."""
    for candidate in (folder, *folder.parents):
        try:
            if any((candidate / marker).exists() for marker in _CHECKPOINT_MARKERS):
                return candidate
        except OSError:
            continue
    return None


def default_cache_dir(invocation_dir: Path) -> Path:
    """``invocation_dir/.sparsecheck_cache``, or a folder in the user's cache when
    ``invocation_dir`` is inside a checkpoint folder."""
    if checkpoint_folder_around(invocation_dir) is None:
        return invocation_dir / DEFAULT_CACHE_DIR
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(str(invocation_dir).encode()).hexdigest()[:16]
    return base / "sparsecheck" / "runs" / digest


def make_cache_dir(folder: Path) -> None:
    """Create the cache ``folder`` (and ``folder/CACHEDIR.TAG``, ``folder/.gitignore``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("CACHEDIR.TAG", _TAG), (".gitignore", "# created by sparsecheck\n*\n")):
        if not (folder / name).exists():
            (folder / name).write_text(text, encoding="utf-8")
