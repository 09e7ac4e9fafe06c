"""Config (options + plugin manager) and Session (one run over collected checks)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sparsecheck._cachedir import default_cache_dir
from sparsecheck._paths import absolute_path
from sparsecheck.errors import UsageError

if TYPE_CHECKING:
    import pluggy

    from sparsecheck.engine._outcome import CheckOutcome, StepRecord
    from sparsecheck.metrics._api import Metric
    from sparsecheck.spec._model import Check



class OptionRegistry:
    """Collects the options plugins add through ``sparsecheck_addoption``."""

    def __init__(self) -> None:
        self.options: list[click.Option] = []

    def add(self, *decls: str, **attrs: Any) -> None:
        """Add an option; ``decls`` and ``attrs`` are those of ``click.Option``."""
        self.options.append(click.Option(list(decls), **attrs))


@dataclass(frozen=True)
class ReadProgress:
    """How far the read pass is."""

    tensors_done: int
    tensors_total: int
    bytes_done: int
    bytes_total: int
    elapsed: float


class Config:
    """The parsed options and the plugin manager of one invocation."""

    def __init__(
        self,
        pluginmanager: pluggy.PluginManager,
        options: Mapping[str, Any] | None = None,
        invocation_dir: Path | None = None,
    ) -> None:
        self.pluginmanager = pluginmanager
        self.hook = pluginmanager.hook
        self.options: dict[str, Any] = dict(options or {})
        self.invocation_dir = invocation_dir or Path.cwd()
        self.deselected: list[Check] = []
        #: What plugins keep for the session by a name of their own (e.g. the loaded baseline).
        self.stash: dict[str, Any] = {}
        self._metrics: dict[str, Metric] | None = None

    def getoption(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value

    @property
    def cache_dir(self) -> Path:
        """The cache folder, absolute (a relative ``--cache-dir`` is taken from the invocation
        folder), so the step outputs recorded under it are absolute too."""
        given = self.getoption("cache_dir")
        if given is None:
            return default_cache_dir(absolute_path(self.invocation_dir))
        return absolute_path(given, self.invocation_dir)

    @property
    def metrics(self) -> dict[str, Metric]:
        """Every registered metric by name (built once, on first use)."""
        if self._metrics is None:
            from sparsecheck._registry import collect_metrics

            self._metrics = collect_metrics(self.pluginmanager)
        return self._metrics

    def refresh_metrics(self) -> None:
        """Forget the metrics built so far (a plugin registered since may add some)."""
        self._metrics = None

    def metric(self, name: str) -> Metric:
        try:
            return self.metrics[name]
        except KeyError:
            from sparsecheck.spec._messages import did_you_mean

            raise UsageError(f"unknown metric {name!r}{did_you_mean(name, self.metrics)}") from None

    def deselect(self, checks: list[Check]) -> None:
        self.deselected.extend(checks)


@dataclass
class Session:
    """One run: the collected checks and their outcomes."""

    config: Config
    checks: list[Check] = field(default_factory=list)
    outcomes: list[CheckOutcome] = field(default_factory=list)
    #: Readers opened by the engine, by resolved source (for the JSON report's checkpoint list).
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Seconds each check spent in its metric, reads it triggered included, by nodeid.
    durations: dict[str, float] = field(default_factory=dict)
    #: Nodeids of the checks whose result came from the result cache.
    cached: set[str] = field(default_factory=set)
    #: The spec steps run (or reused) for the checks, by ``<spec file>::<step id>``.
    steps: dict[str, StepRecord] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    exitstatus: int = 0
