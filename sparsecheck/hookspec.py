"""Every hook sparsecheck calls, documented (the model is pytest's ``hookspec.py``).

Plugins implement hooks with ``@sparsecheck.hookimpl``.  A plugin is any module or object
registered with the plugin manager: the built-ins (metrics, checkpoint formats, reports),
packages found through the ``sparsecheck`` entry-point group, modules named with ``-p NAME``,
and a spec folder's ``sparsecheck_plugin.py``.  Hook arguments may be omitted from an
implementation's signature; pluggy passes only those it names.

The pipeline and the hooks along it::

    addoption → configure → collect_file → collection_modifyitems → sessionstart
      → the spec's steps (add_backends: training runs; masks) → run_checks (one read pass;
      open_checkpoint, read_progress) → evaluate → check_report → sessionfinish
      → terminal_summary → unconfigure
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from sparsecheck._markers import PROJECT

if TYPE_CHECKING:
    from sparsecheck._config import Config, OptionRegistry, ReadProgress, Session
    from sparsecheck.checkpoints._reader import CheckpointReader
    from sparsecheck.engine._baseline import Baseline
    from sparsecheck.engine._outcome import CheckOutcome
    from sparsecheck.metrics._api import Metric, MetricResult
    from sparsecheck.spec._model import Check, SpecFile
    from sparsecheck.training._api import TrainingBackend

hookspec = pluggy.HookspecMarker(PROJECT)


# -- setup ---------------------------------------------------------------------------------


@hookspec(historic=True)
def sparsecheck_addoption(options: OptionRegistry) -> None:
    """Add command-line options to ``sparsecheck run`` (and ``diff``).

    ``options.add("--json", "json_path", help=..., metavar="FILE")`` takes ``click.Option``
    keyword arguments.  Only plugins known before the command line is parsed (built-ins,
    entry points, ``-p``) can add options; a spec folder's local plugin cannot.
    """


@hookspec(historic=True)
def sparsecheck_configure(config: Config) -> None:
    """Called once options are parsed; register conditional plugins here (e.g. a report
    format only when its option was given)."""


@hookspec
def sparsecheck_unconfigure(config: Config) -> None:
    """Called last, before the process exits."""


# -- registries ------------------------------------------------------------------------------


@hookspec
def sparsecheck_add_metrics() -> Sequence[Metric]:
    """Return metric instances to register.  Names must be unique across all plugins; a
    clash is an error naming both plugins."""
    raise NotImplementedError


@hookspec
def sparsecheck_add_backends() -> Sequence[TrainingBackend]:
    """Return training backends (engines that fine-tune a model, optionally under a mask)."""
    raise NotImplementedError


@hookspec(firstresult=True)
def sparsecheck_open_checkpoint(source: str, path: Path | None) -> CheckpointReader | None:
    """Open a checkpoint, or return None to let another plugin try.

    ``source`` is what the user wrote; ``path`` is it as an existing local path, or None when
    it is not one (e.g. a hub id).  Raise ``CheckpointError`` for a recognised but broken
    checkpoint.  Plugins add formats by implementing this hook (``tryfirst`` to win).
    """


# -- collection ------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sparsecheck_collect_file(path: Path, config: Config) -> SpecFile | None:
    """Load ``path`` as a spec file, or return None if it is not one this plugin reads.

    Called for files given on the command line and for files matching the naming rule
    (``*.sparsecheck.yaml``) in folders.  Under ``sparsecheck validate``,
    ``config.getoption("spec_problems")`` is a ``SpecProblems`` (``sparsecheck.spec._loader``):
    an unset ``${env:NAME}`` or an error that leaves the rest of the file readable is added to
    it, not raised, so every problem of the file is listed.
    """


@hookspec
def sparsecheck_collection_modifyitems(config: Config, checks: list[Check]) -> None:
    """Filter or reorder ``checks`` in place (``-k``, ``-m`` and ``--lf`` are plugins of this
    hook).  Deselected checks must be passed to ``config.deselect(checks)``."""


# -- running ---------------------------------------------------------------------------------


@hookspec
def sparsecheck_sessionstart(session: Session) -> None:
    """Called after collection, before any checkpoint is read."""


@hookspec(firstresult=True)
def sparsecheck_run_checks(
    session: Session, checks: Sequence[Check]
) -> dict[str, MetricResult | BaseException] | None:
    """Compute the metric results of ``checks`` (keyed by ``check.nodeid``); an exception
    value marks a check whose metric could not be computed.  The built-in engine plans one
    read pass over the checkpoints and feeds every reducer from it."""


@hookspec
def sparsecheck_read_progress(progress: ReadProgress) -> None:
    """Called as tensors are read (for progress bars)."""


@hookspec(firstresult=True)
def sparsecheck_evaluate(
    check: Check,
    result: MetricResult,
    results: Mapping[str, MetricResult | BaseException],
    baseline: Baseline,
) -> CheckOutcome | None:
    """Judge ``result`` against the check's ``expect``/``warn``/``per``/``mostly``.

    ``results`` holds the session's results by nodeid (an exception where a metric could not
    be computed; skipped checks are absent), for operands naming another check's result
    (``{check: ID}``; ``check.references`` are their nodeids).  Referenced checks are computed
    before the check is judged, also when ``-k``/``-m``/``--lf`` deselected them.
    """


@hookspec
def sparsecheck_check_report(outcome: CheckOutcome) -> None:
    """Called once per check with its outcome, in order (report formats collect here)."""


@hookspec
def sparsecheck_sessionfinish(session: Session, exitstatus: int) -> None:
    """Called after all checks; report formats write their files here."""


@hookspec
def sparsecheck_terminal_summary(session: Session, write: Any) -> None:
    """Add lines to the terminal summary; ``write(text)`` prints one line."""
