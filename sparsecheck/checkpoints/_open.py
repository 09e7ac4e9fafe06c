"""Opening a checkpoint a spec or the command line names: a local path or a hub id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.errors import CheckpointError, PluginError


def open_checkpoint(hook: Any, source: str, base_dir: Path, revision: str | None = None) -> CheckpointReader:
    """Open ``source`` through the ``sparsecheck_open_checkpoint`` hook.

    A relative path is taken relative to ``base_dir`` (the spec file's folder) and ``~`` is
    expanded; when no such file or folder exists the hook gets ``path=None`` and ``source`` as
    written (a hub id, with ``@revision`` appended when ``revision`` is given).
    """
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    local = path.resolve() if _exists(path) else None
    if local is None and revision and "@" not in source:
        source = f"{source}@{revision}"
    reader = hook.sparsecheck_open_checkpoint(source=source, path=local)
    if reader is None:
        hub = "" if _explicit_path(source) else ", and not a hub id (org/name[@revision])"
        raise CheckpointError(f"{source}: no such file or folder (looked for {path}){hub}")
    if not isinstance(reader, CheckpointReader):
        raise PluginError(
            f"sparsecheck_open_checkpoint returned {type(reader).__name__} for {source!r}, "
            "not a CheckpointReader"
        )
    return reader


def _explicit_path(source: str) -> bool:
    """Whether ``source`` can only be a path (``./x``, ``/x``, ``~/x``, ``a/b/c``), never a hub id."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a :class:`CheckpointError` when that cannot be told (a folder on
    the way that may not be searched)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return True
