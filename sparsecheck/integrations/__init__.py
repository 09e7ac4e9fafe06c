"""Integrations with training libraries; each imports its library only when first used.

- :class:`SparsecheckCallback`: a ``transformers.TrainerCallback`` (so for TRL's trainers too)
  that runs a spec against each checkpoint the Trainer saves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsecheck.integrations._trainer import SparsecheckCallback

__all__ = ["SparsecheckCallback"]


def __getattr__(name: str) -> Any:
    if name == "SparsecheckCallback":
        from sparsecheck.integrations._trainer import SparsecheckCallback

        return SparsecheckCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
