"""sparsecheck-trl: a sparsecheck training backend on TRL, with exact masking and snapshots.

Registered through the ``sparsecheck`` entry point; ``sparsecheck_add_backends`` returns the
``trl`` backend.  Loading the plugin imports nothing else: the backend's module when sparsecheck
asks for backends (a spec with training steps), and TRL, accelerate and datasets only when a run
starts, so commands without training (``diff``, most ``run``\\ s) do not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsecheck import hookimpl

if TYPE_CHECKING:
    from sparsecheck.training import TrainingBackend
    from sparsecheck_trl._backend import TrlBackend

__all__ = ["TrlBackend", "sparsecheck_add_backends"]


def __getattr__(name: str) -> object:
    if name == "TrlBackend":
        from sparsecheck_trl._backend import TrlBackend

        return TrlBackend
    raise AttributeError(f"module 'sparsecheck_trl' has no attribute {name!r}")


@hookimpl
def sparsecheck_add_backends() -> list[TrainingBackend]:
    from sparsecheck_trl._backend import TrlBackend

    return [TrlBackend()]
