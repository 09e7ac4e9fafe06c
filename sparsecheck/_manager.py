"""The plugin manager: built-ins, the ``sparsecheck`` entry points, ``-p``, local plugin files."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pluggy

from sparsecheck import hookspec
from sparsecheck._markers import PROJECT
from sparsecheck.errors import PluginError, UsageError

ENTRY_POINT_GROUP = "sparsecheck"
#: Set (to anything non-empty) to skip loading plugins from entry points.
DISABLE_AUTOLOAD_ENV = "SPARSECHECK_DISABLE_PLUGIN_AUTOLOAD"
#: The one local plugin file a spec folder may carry.
LOCAL_PLUGIN_FILE = "sparsecheck_plugin.py"

#: Built-in plugins: short name → module.  ``-p no:NAME`` blocks any of them.
BUILTIN_PLUGINS: dict[str, str] = {
    "formats": "sparsecheck.checkpoints._formats",
    "hub": "sparsecheck.checkpoints._hub",
    "remote": "sparsecheck.checkpoints._remote",
    "gguf": "sparsecheck.checkpoints._gguf",
    "dcp": "sparsecheck.checkpoints._dcp",
    "collect": "sparsecheck.spec._collect",
    "select": "sparsecheck.spec._select",
    "lastfailed": "sparsecheck.engine._lastfailed",
    "cache": "sparsecheck.engine._cache",
    "baseline": "sparsecheck.engine._baseline",
    "engine": "sparsecheck.engine._run",
    "provenance": "sparsecheck.engine._provenance",
    "expectations": "sparsecheck.spec._expect",
    "update_sparsity": "sparsecheck.metrics.update_sparsity",
    "update_mask": "sparsecheck.metrics.update_mask",
    "mask_overlap": "sparsecheck.metrics.mask_overlap",
    "mask_agreement": "sparsecheck.metrics.mask_agreement",
    "update_rank": "sparsecheck.metrics.update_rank",
    "layernorm_sparsity": "sparsecheck.metrics.layernorm_sparsity",
    "transient": "sparsecheck.metrics.transient",
    "weight_similarity": "sparsecheck.metrics.weight_similarity",
    "tolerance_sweep": "sparsecheck.metrics.tolerance_sweep",
    "task_accuracy": "sparsecheck.metrics.task_accuracy",
    "terminal": "sparsecheck.reports.terminal",
    "json": "sparsecheck.reports.json_report",
    "junitxml": "sparsecheck.reports.junitxml",
    "markdown": "sparsecheck.reports.markdown",
    "html": "sparsecheck.reports.html",
    "history": "sparsecheck.reports.history",
    "annotations": "sparsecheck.reports.annotations",
}


def get_plugin_manager(plugins: Iterable[str] = ()) -> pluggy.PluginManager:
    """Build a plugin manager: built-ins, entry points (unless disabled), then ``-p`` names.

    ``plugins`` are ``-p`` values: ``NAME`` imports and registers module ``NAME``;
    ``no:NAME`` blocks a built-in, an entry point or a module of that name.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspec)
    wanted = [p for p in plugins if not p.startswith("no:")]
    for name in (p[3:] for p in plugins if p.startswith("no:")):
        pm.set_blocked(name)
    for name, module in BUILTIN_PLUGINS.items():
        if not pm.is_blocked(name):
            pm.register(importlib.import_module(module), name=name)
    if not os.environ.get(DISABLE_AUTOLOAD_ENV):
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:  # a broken third-party package
            raise PluginError(f"loading the {ENTRY_POINT_GROUP!r} entry points failed: {exc}") from exc
    for name in wanted:
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            continue
        try:
            plugin = importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(f"-p {name}: cannot import plugin module: {exc}") from None
        if not pm.is_registered(plugin):  # else already loaded: a built-in or by its entry point
            register(pm, plugin, name)
    return pm


def register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """Register ``plugin`` and validate its hooks; errors name the plugin."""
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from None
    except ValueError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from None


def load_local_plugin(pm: pluggy.PluginManager, folder: Path) -> ModuleType | None:
    """Import and register ``folder/sparsecheck_plugin.py`` once, if it exists."""
    path = (folder / LOCAL_PLUGIN_FILE).resolve()
    name = f"local:{path}"
    if not path.is_file() or pm.get_plugin(name) is not None or pm.is_blocked(name):
        return None
    # a stable name (not hash(), salted per process): a local backend's module is part of the
    # key of the steps it trains, which must match across runs for their outputs to be reused
    module_name = f"sparsecheck_local_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot load local plugin file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise UsageError(f"{path}: importing the local plugin failed: {type(exc).__name__}: {exc}") from None
    register(pm, module, name)
    return module
