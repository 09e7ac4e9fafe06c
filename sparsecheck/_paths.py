"""Paths a user gives, made absolute once where they enter (options, spec files), so that
nothing later joins a relative path to another one."""

from __future__ import annotations

import os
from pathlib import Path


def absolute_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """``path`` made absolute: ``~`` expanded, a relative path taken from ``base`` (default:
    the current folder), ``..`` folded; symlinks are kept as given."""
    expanded = Path(path).expanduser()
    return Path(os.path.abspath((base or Path.cwd()) / expanded))
