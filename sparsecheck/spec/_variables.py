"""``${env:NAME}`` and ``${name}`` substitution, into strings only (never into keys).

A string that is exactly ``${name}`` takes the variable's value with its type (``tol: ${tol}``
stays a float); inside a longer string the value is written with ``str()``.  ``$${`` is a
literal ``${``.

``sparsecheck validate`` loads specs with ``unset_env`` (a list): an unset ``${env:NAME}`` is then
recorded there with its location and stands as ``$NAME``, so the rest of the file is still checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sparsecheck.errors import Location, SparsecheckError, SpecError, UsageError
from sparsecheck.spec._located import YamlList, YamlMap, to_plain
from sparsecheck.spec._messages import did_you_mean

#: ``$${`` (an escaped ``${``), a complete ``${...}``, or an unterminated ``${``.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_PREFIX = "env:"


@dataclass(frozen=True)
class UnsetEnv:
    """An ``${env:NAME}`` whose variable is not set, where it is used."""

    name: str
    location: Location

    @property
    def placeholder(self) -> str:
        """What the reference stands as: ``$NAME``."""
        return f"${self.name}"


class Variables:
    """What ``${...}`` resolves to: ``env:NAME`` from the environment, other names from ``values``.

    With ``unset_env`` (a list), an unset environment variable is appended to it and stands as
    its :attr:`UnsetEnv.placeholder`; without, it is a :class:`SpecError`.
    """

    def __init__(
        self,
        values: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        unset_env: list[UnsetEnv] | None = None,
    ) -> None:
        self.values = dict(values)
        self.environ = os.environ if environ is None else environ
        self.unset_env = unset_env

    def with_values(self, values: Mapping[str, Any]) -> Variables:
        """These variables plus ``values`` (which win on a clash)."""
        return Variables({**self.values, **values}, self.environ, self.unset_env)

    def lookup(self, reference: str, location: Location) -> Any:
        """The value of ``${reference}``; an unset or unknown one is an error at ``location``."""
        name = reference.strip()
        if name.startswith(_ENV_PREFIX):
            env_name = name.removeprefix(_ENV_PREFIX)
            if env_name not in self.environ:
                if self.unset_env is None:
                    raise SpecError(f"environment variable {env_name!r} is not set", location)
                unset = UnsetEnv(env_name, location)
                if unset not in self.unset_env:
                    self.unset_env.append(unset)
                return unset.placeholder
            return self.environ[env_name]
        if name not in self.values:
            hint = did_you_mean(name, self.values)
            if not hint:
                defined = ", ".join(sorted(self.values)) or "none"
                hint = f" (defined: {defined}; use ${{env:{name}}} for an environment variable)"
            raise SpecError(f"unknown variable {name!r}{hint}", location)
        return self.values[name]

    def substitute(self, value: Any, location: Location) -> Any:
        """``value`` with references replaced in every string of it (keys untouched)."""
        if isinstance(value, YamlMap):
            return value.map_values(self.substitute)
        if isinstance(value, YamlList):
            return value.map_items(self.substitute)
        if isinstance(value, str):
            return self._substitute_string(value, location)
        return value

    def _substitute_string(self, text: str, location: Location) -> Any:
        matches = list(_REFERENCE.finditer(text))
        if not matches:
            return text
        whole = matches[0]
        if len(matches) == 1 and whole.group(0) == text and whole.group(1) is not None:
            return self.lookup(whole.group(1), location)
        parts: list[str] = []
        end = 0
        for match in matches:
            parts.append(text[end : match.start()])
            end = match.end()
            if match.group(0) == "$${":
                parts.append("${")
            elif match.group(1) is None:
                raise SpecError(f"unterminated '${{' in {text!r} (write '$${{' for a literal)", location)
            else:
                parts.append(self._as_text(match.group(1), location))
        parts.append(text[end:])
        return "".join(parts)

    def _as_text(self, reference: str, location: Location) -> str:
        value = self.lookup(reference, location)
        if isinstance(value, dict | list):
            raise SpecError(
                f"variable {reference.strip()!r} is a {'mapping' if isinstance(value, dict) else 'list'}: "
                "it can only stand alone as a whole value",
                location,
            )
        return str(value)


def spec_variables(
    declared: YamlMap | None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    unset_env: list[UnsetEnv] | None = None,
) -> Variables:
    """The ``vars:`` of a spec; each value may use ``${env:...}`` and the variables above it.

    ``overrides`` (``sparsecheck run --var NAME=VALUE``) replace declared values, and may add
    variables the file does not declare; ``unset_env`` is as :class:`Variables` takes it.
    """
    overrides = overrides or {}
    variables = Variables({}, environ, unset_env)
    if declared is not None:
        for name, value in declared.items():
            location = declared.value_location(name)
            resolved = overrides[name] if name in overrides else variables.substitute(value, location)
            variables = variables.with_values({name: resolved})
    added = {k: v for k, v in overrides.items() if declared is None or k not in declared}
    return variables.with_values(added)


def parse_assignments(items: Iterable[str], option: str = "--var") -> dict[str, Any]:
    """``NAME=VALUE`` pairs (``--var``); VALUE read like a spec's YAML, so ``tol=1e-5`` is a
    number (text that is not YAML stays text).  A malformed pair is a UsageError naming it."""
    from sparsecheck.spec._yaml import load_yaml

    parsed: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"option {option}: expected NAME=VALUE, got {item!r}")
        try:
            parsed[name] = to_plain(load_yaml(value, f"{option} {name}")) if value else ""
        except SparsecheckError:
            parsed[name] = value
    return parsed
