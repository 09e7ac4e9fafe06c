"""Option defaults from ``[tool.sparsecheck]`` in ``pyproject.toml`` and from ``SPARSECHECK_*``
environment variables, for ``run`` and ``diff``, and ``paths``, ``check-paths`` and ``var`` for ``validate``.

Precedence: the command line, then the environment, then the file, then sparsecheck's own
defaults.  A key is an option's long name (``cache-dir``, ``workers``, ``json``, ``baseline``,
``strict-warnings``…; ``paths`` for ``run``'s spec paths); ``_`` may stand for ``-``.  The
environment variable of an option is ``SPARSECHECK_`` + its name in capitals with ``_``
(``SPARSECHECK_CACHE_DIR``, ``SPARSECHECK_WORKERS``); a flag takes ``1``/``true``/``yes`` or
``0``/``false``/``no``; a multiple option (``var``) takes space-separated values.

The file is the nearest ``pyproject.toml`` from the current folder up; relative paths in it
are relative to its folder.  An unknown key or a value of the wrong type is a usage error
naming the file and the key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from sparsecheck.errors import UsageError
from sparsecheck.spec._messages import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ENV_PREFIX = "SPARSECHECK_"
#: Environment variables that are not option defaults.
_NOT_OPTIONS = frozenset({"SPARSECHECK_DISABLE_PLUGIN_AUTOLOAD"})


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` from ``start`` up."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def file_settings(path: Path) -> dict[str, Any]:
    """``[tool.sparsecheck]`` of ``path`` (empty without one)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    table = document.get("tool", {}).get("sparsecheck", {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [tool.sparsecheck] must be a table")
    return table


def _params(command: click.Command) -> dict[str, click.Parameter]:
    """The command's parameters that take defaults, by key (``cache-dir``; ``paths``)."""
    keyed: dict[str, click.Parameter] = {}
    for param in command.params:
        if param.name is None or not param.expose_value:
            continue
        if isinstance(param, click.Option):
            longs = [o for o in param.opts if o.startswith("--")]
            if longs:
                keyed[longs[0][2:]] = param
        elif isinstance(param, click.Argument):
            keyed[param.name] = param
    return keyed


def _env_value(param: click.Parameter, text: str) -> Any:
    return text.split() if param.multiple or param.nargs == -1 else text


def _file_value(param: click.Parameter, value: Any, where: str, folder: Path) -> Any:
    many = param.multiple or param.nargs == -1
    values = value if isinstance(value, list) else None
    if many and values is None:
        values = [value]
    if not many and values is not None:
        raise UsageError(f"{where}: expected one value, got a list")
    items = values if values is not None else [value]
    if any(isinstance(item, dict | list) for item in items):
        raise UsageError(f"{where}: expected a string, number or boolean")
    if isinstance(param.type, click.Path):
        items = [item if str(item) == "-" else str(folder / str(item)) for item in items]
    return items if many else items[0]


def default_map(
    commands: Mapping[str, click.Command], cwd: Path, environ: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """The defaults of ``commands`` (by name) from the environment and the nearest
    pyproject.toml, as click's ``default_map``; a file key must name an option of one of them."""
    environ = os.environ if environ is None else environ
    params = {name: _params(command) for name, command in commands.items()}
    known = {key for keyed in params.values() for key in keyed}
    pyproject = find_pyproject(cwd)
    settings = file_settings(pyproject) if pyproject is not None else {}
    for key in settings:
        if key.replace("_", "-") not in known and key not in known:
            hint = did_you_mean(key.replace("_", "-"), known) or f" (known: {', '.join(sorted(known))})"
            raise UsageError(f"{pyproject}: [tool.sparsecheck] {key}: unknown key{hint}")
    defaults: dict[str, dict[str, Any]] = {}
    for command, keyed in params.items():
        found = defaults.setdefault(command, {})
        for key, value in settings.items():
            param = keyed.get(key.replace("_", "-")) or keyed.get(key)
            if param is not None and param.name is not None and pyproject is not None:
                where = f"{pyproject}: [tool.sparsecheck] {key}"
                found[param.name] = _file_value(param, value, where, pyproject.parent)
        for key, param in keyed.items():
            variable = ENV_PREFIX + key.replace("-", "_").upper()
            if variable in environ and variable not in _NOT_OPTIONS and param.name is not None:
                found[param.name] = _env_value(param, environ[variable])
    return defaults
