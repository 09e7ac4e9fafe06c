"""Collecting checks: spec files named on the command line, and folders searched for them.

In a folder, the files matching :data:`SPEC_GLOBS` are collected (sorted, hidden folders,
``.venv``, ``node_modules``, ``__pycache__`` and the cache folder left out).  Before a spec file
is loaded, its folder's local plugin file (``sparsecheck_plugin.py``) is registered.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import click

from sparsecheck._config import Config
from sparsecheck._manager import LOCAL_PLUGIN_FILE, load_local_plugin
from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.spec._loader import load_spec
from sparsecheck.spec._messages import did_you_mean
from sparsecheck.spec._model import Check, SpecFile
from sparsecheck.spec._naming import SPEC_GLOBS

#: The naming rule of spec files found in folders.
#: Suffixes the built-in collector reads when a file is named explicitly.
SPEC_SUFFIXES = (".yaml", ".yml")
_SKIPPED_FOLDERS = frozenset({".venv", "node_modules", "__pycache__"})
#: A variable reference in a spec file's text.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@hookimpl(trylast=True)
def sparsecheck_collect_file(path: Path, config: Config) -> SpecFile | None:
    """Load ``.yaml``/``.yml`` files as spec files; leave other files to other plugins."""
    if path.suffix.lower() not in SPEC_SUFFIXES:
        return None
    return load_spec(path, config.metrics, config.getoption("vars"), config.getoption("spec_problems"))


def collect(config: Config, paths: Sequence[Path]) -> list[Check]:
    """The checks of every spec file under ``paths``, in file order (each file once)."""
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    checks: list[Check] = []
    files = spec_files(config, paths)
    for file, explicit in files:
        spec = load_file(config, file, explicit)
        if spec is not None:
            checks.extend(spec.checks)
    _warn_unused_vars(config.getoption("vars") or {}, [config.invocation_dir / file for file, _ in files])
    return checks


def spec_files(config: Config, paths: Sequence[Path]) -> list[tuple[Path, bool]]:
    """Each file to collect under the existing ``paths`` once, as nodeids show it, and whether
    it was named itself (not found in a folder)."""
    found: list[tuple[Path, bool]] = []
    seen: set[Path] = set()
    for path in paths:
        explicit = not path.is_dir()
        files = [path] if explicit else list(_spec_files(path, config.cache_dir.resolve()))
        for file in files:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append((_shown(file, config.invocation_dir), explicit))
    return found


def load_file(config: Config, file: Path, explicit: bool) -> SpecFile | None:
    """The spec file ``file`` (its folder's local plugin registered first); None for a file
    found in a folder that no collector reads, a usage error for one named itself."""
    if load_local_plugin(config.pluginmanager, file.parent) is not None:
        config.refresh_metrics()
    spec: SpecFile | None = config.hook.sparsecheck_collect_file(path=file, config=config)
    if spec is None and explicit:
        raise UsageError(
            f"not a spec file (sparsecheck reads {' and '.join(SPEC_SUFFIXES)} files; "
            f"a plugin, e.g. in {LOCAL_PLUGIN_FILE}, may collect others)",
            str(file),
        )
    return spec


def _warn_unused_vars(given: Mapping[str, object], files: Iterable[Path]) -> None:
    """Warn about each ``--var NAME`` that no collected spec file uses as ``${NAME}`` (a typo
    would otherwise change nothing, silently), naming the closest name used."""
    if not given:
        return
    used: set[str] = set()
    for file in files:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            used.update(_REFERENCE.findall(file.read_text(encoding="utf-8")))
    for name in given:
        if name not in used:
            hint = did_you_mean(name, used)
            click.echo(f"sparsecheck: warning: --var {name}: no spec file uses ${{{name}}}{hint}", err=True)


def _shown(file: Path, invocation_dir: Path) -> Path:
    """The spec path in nodeids: relative to the invocation folder when under it, else
    absolute, so a file given either way gets the same ids (``--lf``, reports)."""
    resolved = file.resolve()
    try:
        return resolved.relative_to(invocation_dir.resolve())
    except ValueError:
        return resolved


def _spec_files(folder: Path, cache_dir: Path) -> Iterator[Path]:
    """Files under ``folder`` matching the naming rule, sorted, each folder before its children."""
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(
            name
            for name in folders
            if not name.startswith(".")
            and name not in _SKIPPED_FOLDERS
            and (Path(root) / name).resolve() != cache_dir
        )
        for name in sorted(files):
            if any(fnmatch.fnmatch(name, pattern) for pattern in SPEC_GLOBS):
                yield Path(root) / name
