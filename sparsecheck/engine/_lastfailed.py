"""``--lf``: rerun only the checks that failed last time (the model is pytest's cacheprovider)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from sparsecheck._atomic import write_text_atomic
from sparsecheck._cachedir import make_cache_dir
from sparsecheck._markers import hookimpl
from sparsecheck.engine._outcome import Status

if TYPE_CHECKING:
    from pathlib import Path

    from sparsecheck._config import Config, OptionRegistry, Session
    from sparsecheck.spec._model import Check

FILE_NAME = "lastfailed.json"


def _path(config: Config) -> Path:
    return config.cache_dir / FILE_NAME


def _load(config: Config) -> dict[str, bool]:
    try:
        data = json.loads(_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): True for k in data} if isinstance(data, dict) else {}


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    options.add(
        "--lf",
        "--last-failed",
        "last_failed",
        is_flag=True,
        help="Run only the checks that failed or errored last time (all, if none did).",
    )


@hookimpl
def sparsecheck_collection_modifyitems(config: Config, checks: list[Check]) -> None:
    if not config.getoption("last_failed"):
        return
    failed = _load(config)
    keep = [c for c in checks if c.nodeid in failed]
    if not keep:
        return
    config.deselect([c for c in checks if c.nodeid not in failed])
    checks[:] = keep


@hookimpl
def sparsecheck_sessionfinish(session: Session) -> None:
    """Record failures; a check that ran and passed is cleared, others keep their record."""
    failed = _load(session.config)
    for outcome in session.outcomes:
        if outcome.status in (Status.FAIL, Status.ERROR):
            failed[outcome.check.nodeid] = True
        else:
            failed.pop(outcome.check.nodeid, None)
    path = _path(session.config)
    if not failed and not path.exists():
        return
    try:
        make_cache_dir(path.parent)
        write_text_atomic(path, json.dumps(failed, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        click.echo(f"sparsecheck: warning: cannot write {path}: {exc.strerror or exc}", err=True)
