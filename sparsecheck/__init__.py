"""sparsecheck: test what a fine-tuning run changed in a model.

The public API.  Plugin authors need ``hookimpl``, ``Metric``, ``Reducer``, ``Param``,
``MetricResult`` and ``TensorGroup``; everything else is for embedding sparsecheck.
"""

# ruff: noqa: E402 - the early read-ahead starts before the imports below
from __future__ import annotations

from sparsecheck._early import prepare_command_process

prepare_command_process()  # e.g. a cold `sparsecheck diff` reads while the rest imports

import importlib
from typing import TYPE_CHECKING

from sparsecheck._version import __version__

if TYPE_CHECKING:
    from sparsecheck._config import Config, OptionRegistry, ReadProgress, Session
    from sparsecheck._markers import hookimpl
    from sparsecheck.checkpoints._pairing import SkippedTensor
    from sparsecheck.checkpoints._reader import CheckpointReader, StoredTensor, TensorMeta
    from sparsecheck.engine._outcome import CheckOutcome, Status
    from sparsecheck.errors import (
        CheckpointError,
        Location,
        PluginError,
        SparsecheckError,
        SpecError,
        UsageError,
    )
    from sparsecheck.exitcodes import ExitCode
    from sparsecheck.metrics._api import (
        Metric,
        MetricResult,
        Param,
        Reducer,
        TensorGroup,
    )
    from sparsecheck.metrics._grouping import GRANULARITIES, group_key, layer_of, module_of, sort_keys
    from sparsecheck.spec._model import Check, CheckpointRef, Expectation, SpecFile

#: Each public name → the private module that defines it, imported on first use, so that
#: ``import sparsecheck`` (and the pytest plugin, at every pytest start) stays cheap.
_SOURCES = {
    "Config": "sparsecheck._config",
    "OptionRegistry": "sparsecheck._config",
    "ReadProgress": "sparsecheck._config",
    "Session": "sparsecheck._config",
    "hookimpl": "sparsecheck._markers",
    "SkippedTensor": "sparsecheck.checkpoints._pairing",
    "CheckpointReader": "sparsecheck.checkpoints._reader",
    "StoredTensor": "sparsecheck.checkpoints._reader",
    "TensorMeta": "sparsecheck.checkpoints._reader",
    "CheckOutcome": "sparsecheck.engine._outcome",
    "Status": "sparsecheck.engine._outcome",
    "CheckpointError": "sparsecheck.errors",
    "Location": "sparsecheck.errors",
    "PluginError": "sparsecheck.errors",
    "SparsecheckError": "sparsecheck.errors",
    "SpecError": "sparsecheck.errors",
    "UsageError": "sparsecheck.errors",
    "ExitCode": "sparsecheck.exitcodes",
    "Metric": "sparsecheck.metrics._api",
    "MetricResult": "sparsecheck.metrics._api",
    "Param": "sparsecheck.metrics._api",
    "Reducer": "sparsecheck.metrics._api",
    "TensorGroup": "sparsecheck.metrics._api",
    "GRANULARITIES": "sparsecheck.metrics._grouping",
    "group_key": "sparsecheck.metrics._grouping",
    "layer_of": "sparsecheck.metrics._grouping",
    "module_of": "sparsecheck.metrics._grouping",
    "sort_keys": "sparsecheck.metrics._grouping",
    "Check": "sparsecheck.spec._model",
    "CheckpointRef": "sparsecheck.spec._model",
    "Expectation": "sparsecheck.spec._model",
    "SpecFile": "sparsecheck.spec._model",
}

__all__ = [
    "GRANULARITIES",
    "Check",
    "CheckOutcome",
    "CheckpointError",
    "CheckpointReader",
    "CheckpointRef",
    "Config",
    "ExitCode",
    "Expectation",
    "Location",
    "Metric",
    "MetricResult",
    "OptionRegistry",
    "Param",
    "PluginError",
    "ReadProgress",
    "Reducer",
    "Session",
    "SkippedTensor",
    "SparsecheckError",
    "SpecError",
    "SpecFile",
    "Status",
    "StoredTensor",
    "TensorGroup",
    "TensorMeta",
    "UsageError",
    "__version__",
    "group_key",
    "hookimpl",
    "layer_of",
    "module_of",
    "sort_keys",
]


def __getattr__(name: str) -> object:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'sparsecheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
