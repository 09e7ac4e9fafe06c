"""Naming the code that raised: the innermost frame of a traceback outside sparsecheck itself,
pluggy and click (a plugin, usually)."""

from __future__ import annotations

import traceback
from pathlib import Path

import click
import pluggy

_OURS = tuple(str(Path(module.__file__).resolve().parent) for module in (click, pluggy) if module.__file__)
_PACKAGE = str(Path(__file__).resolve().parent)


def raised_at(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc``'s traceback outside sparsecheck, pluggy
    and click; of the innermost frame at all when every frame is theirs."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown code"
    outside = [f for f in frames if not str(Path(f.filename).resolve()).startswith((_PACKAGE, *_OURS))]
    frame = (outside or frames)[-1]
    return f"{frame.filename}:{frame.lineno}"
