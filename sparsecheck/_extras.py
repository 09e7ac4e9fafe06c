"""Optional dependencies: each belongs to an extra of ``pip install 'sparsecheck[EXTRA]'``.

The core (reading and comparing checkpoints, every tensor metric) needs none of them.  Code
that needs one calls :func:`require` where it is needed (never at module level), so a missing
one is a single usage error (exit code 4) naming what asked for it and the extra to install::

    torch = require("torch", "reading a .bin checkpoint")
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from sparsecheck.errors import UsageError

#: Extra → what it installs and is for (``pyproject.toml`` lists the packages; ``all`` is every one).
EXTRAS: dict[str, str] = {
    "torch": "torch: .bin/.pt checkpoints, update_rank on CUDA, TensorGroup.tensor()",
    "train": "torch and transformers: training steps, task_accuracy, the demo, sparsecheck smollm2",
    "plots": "matplotlib: the HTML report's figures",
    "hub": "huggingface_hub: checkpoints by hub id",
    "remote": "fsspec and s3fs: checkpoints at http(s):// and s3:// URLs",
    "ray": "ray: --executor ray",
    "gguf": "gguf: GGUF checkpoints",
}
#: Module → the extra that installs it.
PROVIDER: dict[str, str] = {
    "torch": "torch",
    "transformers": "train",
    "matplotlib": "plots",
    "huggingface_hub": "hub",
    "fsspec": "remote",
    "s3fs": "remote",
    "ray": "ray",
    "gguf": "gguf",
}


class MissingExtra(UsageError):
    """An optional dependency is not installed; the message names the extra that installs it."""

    def __init__(self, module: str, purpose: str, extra: str | None = None) -> None:
        self.module = module
        self.extra = extra or PROVIDER[module.partition(".")[0]]
        super().__init__(f"{purpose} needs {module}, which is not installed: {install_command(self.extra)}")


def install_command(extra: str) -> str:
    """The pip command that installs ``extra``."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return f"pip install 'sparsecheck[{extra}]'"


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a half-removed module
        return False


def require(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import and return ``module``, or raise :class:`MissingExtra`.

    ``purpose`` says what needs it, naming the culprit (``"t.yaml: check rank: update_rank on
    cuda"``); ``extra`` defaults to the one that installs ``module``.  An installed module that
    fails to import (a broken install) raises its own ImportError.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise
        raise MissingExtra(module, purpose, extra) from None
