"""Writing a checkpoint folder so that it appears complete or not at all."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


def write_folder(folder: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary sibling of ``folder``, then put it in ``folder``'s place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder
