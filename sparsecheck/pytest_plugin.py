"""pytest collects spec files: each check is one test item (entry point ``pytest11``).

Naming rule: files named ``*.sparsecheck.yaml`` / ``*.sparsecheck.yml`` (the ini option
``sparsecheck_patterns`` changes it).  All selected checks of a session share one read pass,
run when the first of them runs; each item then judges its own result.  The checks that
selected checks reference (``{check: ID}``) are computed too, even when deselected.

It is imported at every pytest start in an environment with sparsecheck installed, so it imports
nothing of sparsecheck's until pytest meets a spec file (:mod:`sparsecheck._pytest_items`).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from sparsecheck.spec._naming import SPEC_GLOBS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "sparsecheck_patterns",
        type="args",
        default=list(SPEC_GLOBS),
        help="glob patterns of the spec files sparsecheck collects",
    )
    parser.getgroup("sparsecheck").addoption(
        "--sparsecheck-plugin",
        action="append",
        default=[],
        metavar="NAME",
        dest="sparsecheck_plugins",
        help="load sparsecheck plugin NAME (no:NAME disables one)",
    )
    parser.getgroup("sparsecheck").addoption(
        "--sparsecheck-workers",
        type=int,
        default=None,
        metavar="N",
        dest="sparsecheck_workers",
        help="worker processes for sparsecheck's read pass (default: one per core for large passes; "
        "1 under pytest-xdist)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.File | None:
    patterns = parent.config.getini("sparsecheck_patterns")
    if any(fnmatch.fnmatch(file_path.name, p) for p in patterns):
        from sparsecheck._pytest_items import SpecFileNode

        node: pytest.File = SpecFileNode.from_parent(parent, path=file_path)
        return node
    return None
