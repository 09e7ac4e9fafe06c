"""Fakes and helpers shared by the spec tests: fake metrics, writing specs, expected locations."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy
import pytest

from sparsecheck import hookimpl, hookspec
from sparsecheck._config import Config
from sparsecheck.errors import SpecError
from sparsecheck.metrics._api import Metric, MetricResult, Param, Reducer
from sparsecheck.spec import _collect, _expect, _select
from sparsecheck.spec._loader import load_spec
from sparsecheck.spec._model import SpecFile


class _NoReducer(Metric):
    """Spec tests never run a metric."""

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        raise AssertionError("the spec tests do not compute metrics")


class FakeSparsity(_NoReducer):
    name = "update_sparsity"
    summary = "fake update sparsity"
    value_field = "sparsity"
    granularities = ("tensor", "layer", "module")
    params = (
        Param("base", "checkpoint", "the checkpoint before"),
        Param("tuned", "checkpoint", "the checkpoint after"),
        Param("policy", "choice", "equality policy", "atol", ("exact", "atol", "rtol")),
        Param("tol", "float", "tolerance", 1e-5),
    )


class KindsProbe(_NoReducer):
    """One parameter of every kind, and no selection parameters."""

    name = "kinds_probe"
    summary = "every parameter kind"
    value_field = "value"
    reads_tensors = False
    params = (
        Param("ckpt", "checkpoint", "a checkpoint", "sft"),
        Param("run", "checkpoints", "a run", ("sft",)),
        Param("mask", "mask", "a mask", "sft"),
        Param("ratio", "float", "a float", 0.5),
        Param("count", "int", "an int", 3),
        Param("flag", "bool", "a bool", False),
        Param("label", "str", "a string", "x"),
        Param("mode", "choice", "a choice", "fast", ("fast", "slow")),
        Param("cuts", "floats", "floats", (0.1, 0.2)),
        Param("names", "strings", "strings", ()),
        Param("maybe", "float", "optional float", None),
    )


METRICS: dict[str, Metric] = {metric.name: metric for metric in (FakeSparsity(), KindsProbe())}

HEADER = """\
version: 1
checkpoints:
  sft: ckpts/sft
  rl_a: ckpts/rl-a
  rl_b: ckpts/rl-b
"""


def write(folder: Path, text: str, name: str = "spec.sparsecheck.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(folder: Path, text: str, name: str = "spec.sparsecheck.yaml") -> SpecFile:
    return load_spec(write(folder, text, name), METRICS)


def load_error(folder: Path, text: str) -> str:
    path = write(folder, text)
    with pytest.raises(SpecError) as info:
        load_spec(path, METRICS)
    return str(info.value)


def where(path: Path | str, text: str, needle: str, occurrence: int = 0) -> str:
    """``path:line:column`` of the ``occurrence``-th ``needle`` in the dedented ``text``."""
    text = textwrap.dedent(text)
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{path}:{line}:{column}"


def plugin_config(*plugins: object, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Config:
    """A Config over a bare plugin manager holding the spec plugins, the fakes and ``plugins``."""
    pm = pluggy.PluginManager("sparsecheck")
    pm.add_hookspecs(hookspec)
    for module in (_collect, _select, _expect, FakeMetricsPlugin(), *plugins):
        pm.register(module)
    return Config(pm, options, **kwargs)


class FakeMetricsPlugin:
    @hookimpl
    def sparsecheck_add_metrics(self) -> list[Metric]:
        return list(METRICS.values())


def result(
    fields: dict[str, Any], groups: dict[str, dict[str, dict[str, Any]]] | None = None
) -> MetricResult:
    return MetricResult(
        metric="update_sparsity",
        value_field="sparsity",
        fields=fields,
        definition="fake",
        groups=groups or {},
    )
