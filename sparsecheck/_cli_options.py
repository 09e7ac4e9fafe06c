"""The options the ``sparsecheck`` commands share, and reading them before click parses.

``cli`` builds the commands; this module holds what several of them declare (``-p``, ``--var``, the
session options, the options of ``diff`` and ``mask``) and what ``main`` needs before parsing: the
``-p`` values (plugins may add options) and the defaults from ``[tool.sparsecheck]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from sparsecheck._config import OptionRegistry
from sparsecheck.errors import UsageError

#: The commands that take defaults from pyproject.toml's [tool.sparsecheck] and SPARSECHECK_* variables,
#: and which of their parameters do (None: all).
CONFIGURED_COMMANDS: dict[str, tuple[str, ...] | None] = {
    "run": None,
    "diff": None,
    "validate": ("paths", "check_paths", "vars"),
}


def configured_defaults(group: click.Group, args: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    """The ``default_map`` of a ``run``, ``diff`` or ``validate`` invocation (None for other commands)."""
    if not args or args[0] not in CONFIGURED_COMMANDS:
        return None
    from sparsecheck._defaults import default_map

    commands = {}
    for name, configured in CONFIGURED_COMMANDS.items():
        command = group.commands[name]
        if configured is not None:
            command = click.Command(name, params=[p for p in command.params if p.name in configured])
        commands[name] = command
    return default_map(commands, Path.cwd())


def prescan_plugins(args: Sequence[str]) -> list[str]:
    """The ``-p`` values, needed before parsing: plugins may add options."""
    found = []
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "-p" and index + 1 < len(args):
            found.append(args[index + 1])
        elif arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            found.append(arg[2:].removeprefix("="))
    return found


def accepts_plugins(command: click.Command) -> click.Command:
    """Declare ``-p NAME`` on ``command`` (its values are read by ``prescan_plugins``)."""
    command.params.append(
        click.Option(
            ["-p", "plugins"],
            multiple=True,
            metavar="NAME",
            expose_value=False,
            help="Load plugin module NAME; -p no:NAME disables plugin NAME.",
        )
    )
    return command


def _parse_vars(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; VALUE read like a spec's YAML, so ``--var tol=1e-5`` is a number."""
    from sparsecheck.spec._variables import parse_assignments

    try:
        return parse_assignments(values)
    except UsageError as exc:
        raise click.BadParameter(exc.message.removeprefix("option --var: "), ctx, param) from None


def var_option() -> click.Option:
    """``--var NAME=VALUE`` (``run``, ``demo``, ``validate``)."""
    return click.Option(
        ["--var", "vars"],
        multiple=True,
        metavar="NAME=VALUE",
        callback=_parse_vars,
        help="Set a spec variable (${NAME}), overriding its vars: value; VALUE is read as YAML.",
    )


def accepts_vars(command: click.Command) -> click.Command:
    """Declare ``--var NAME=VALUE`` on ``command``."""
    command.params.append(var_option())
    return command


#: Options of spec runs that mean nothing to ``diff`` and ``mask`` (no spec, no pass/fail).
SPEC_RUN_ONLY = frozenset(
    {
        "--strict-warnings",
        "--var",
        "--lf",
        "-k",
        "-m",
        "--junitxml",
        "--annotations",
        "--history",
        "--label",
        "--save-baseline",
        "--baseline",
        "--baseline-missing",
        "--cache-clear",
    }
)


def session_options(
    registry: OptionRegistry, first_look: bool = False
) -> Callable[[click.Command], click.Command]:
    """Options shared by ``run``, ``demo``, ``diff`` and ``mask``: core ones, ``-p``, then those
    plugins added; a ``first_look`` (``diff``, ``mask``) leaves out :data:`SPEC_RUN_ONLY`."""
    core = [
        click.Option(["-q", "--quiet"], count=True, help="Less output."),
        click.Option(["-v", "--verbose"], count=True, help="More output: per-group breakdowns (-vv: all)."),
        click.Option(["--strict-warnings"], is_flag=True, help="WARN counts as a failure (exit 1)."),
        var_option(),
        click.Option(
            ["--color"],
            type=click.Choice(["auto", "always", "never"]),
            help="Colour: auto (the default: on a terminal, unless NO_COLOR; FORCE_COLOR forces it), "
            "always or never.",
        ),
        click.Option(
            ["--cache-dir"],
            type=click.Path(file_okay=False, path_type=Path),
            help="Folder for the last-failed list and results (default ./.sparsecheck_cache).",
        ),
    ]

    def kept(options: list[click.Option]) -> list[click.Option]:
        return [o for o in options if not (first_look and SPEC_RUN_ONLY.intersection(o.opts))]

    def apply(command: click.Command) -> click.Command:
        command.params.extend(kept(core))
        accepts_plugins(command)
        command.params.extend(kept(registry.options))
        return command

    return apply


#: Metric arguments ``diff`` and ``mask`` take from their options.
PAIR_ARGS = ("policy", "tol", "include", "exclude", "on_mismatch", "output")


def pair_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``diff`` and ``mask`` share: how entries are compared and which tensors."""
    for option in reversed(
        [
            click.option(
                "--policy", type=click.Choice(["exact", "atol", "rtol"]), default="atol", show_default=True
            ),
            click.option("--tol", type=float, help="The policy's tolerance (default: atol 1e-5, rtol 1e-3)."),
            click.option("--include", multiple=True, metavar="GLOB", help="Compare only these tensor names."),
            click.option("--exclude", multiple=True, metavar="GLOB", help="Leave these tensor names out."),
            click.option(
                "--on-mismatch",
                type=click.Choice(["error", "skip"]),
                default="error",
                show_default=True,
                help="A name on one side only, or a shape mismatch: fail, or skip and list it.",
            ),
        ]
    ):
        command = option(command)
    return command


def use_color(choice: str | None, environ: Mapping[str, str]) -> bool | None:
    """``--color``: True (always), False (never) or None (when the stream is a terminal);
    under ``auto`` a non-empty ``NO_COLOR`` turns colour off and ``FORCE_COLOR`` (not 0) on."""
    if choice in ("always", "never"):
        return choice == "always"
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR", "0") not in ("", "0"):
        return True
    return None
