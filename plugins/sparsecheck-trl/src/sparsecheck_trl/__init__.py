"""sparsecheck-trl: a sparsecheck training backend on TRL, with exact masking and snapshots.

Registered through the ``sparsecheck`` entry point; ``sparsecheck_add_backends`` returns the
``trl`` backend.  TRL, accelerate and datasets are imported only when a run starts.
"""

from __future__ import annotations

from sparsecheck import hookimpl
from sparsecheck.training import TrainingBackend
from sparsecheck_trl._backend import TrlBackend

__all__ = ["TrlBackend", "sparsecheck_add_backends"]


@hookimpl
def sparsecheck_add_backends() -> list[TrainingBackend]:
    return [TrlBackend()]
