"""sparsecheck: test what a fine-tuning run changed in a model.

The public API.  Plugin authors need ``hookimpl``, ``Metric``, ``Reducer``, ``Param``,
``MetricResult`` and ``TensorGroup``; everything else is for embedding sparsecheck.
"""

# ruff: noqa: E402 - the early read-ahead starts before the imports below
from __future__ import annotations

from sparsecheck._early import read_ahead_of_imports

read_ahead_of_imports()  # a cold `sparsecheck diff` reads while the rest imports

from sparsecheck._config import Config, OptionRegistry, ReadProgress, Session
from sparsecheck._markers import hookimpl
from sparsecheck._version import __version__
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
