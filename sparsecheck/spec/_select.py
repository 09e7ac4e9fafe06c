"""``-k EXPR`` and ``-m MARKEXPR``: keep the checks whose keywords or marks match.

With ``-m`` an identifier is true when the check has that mark.  With ``-k`` it is true when
it is, ignoring case, part of the check's id, its nodeid (spec file and id), its metric's name or
one of its marks.
"""

from __future__ import annotations

from functools import partial

from sparsecheck._config import Config, OptionRegistry
from sparsecheck._manager import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.spec._collect import SPEC_GLOBS
from sparsecheck.spec._expression import Expression, ExpressionError, compile_expression
from sparsecheck.spec._model import Check

_SPEC_SUFFIXES = tuple(pattern.removeprefix("*") for pattern in SPEC_GLOBS)


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    options.add(
        "-k",
        "keyword",
        metavar="EXPR",
        default=None,
        help="only run checks whose id, file, metric or marks match EXPR "
        "(substrings, case-insensitive; 'and', 'or', 'not', parentheses), e.g. -k 'sparse and not layer'",
    )
    options.add(
        "-m",
        "markexpr",
        metavar="MARKEXPR",
        default=None,
        help="only run checks whose marks match MARKEXPR, e.g. -m 'gate and not slow'",
    )


@hookimpl
def sparsecheck_collection_modifyitems(config: Config, checks: list[Check]) -> None:
    keyword = _expression(config, "keyword", "-k")
    markexpr = _expression(config, "markexpr", "-m")
    if keyword is None and markexpr is None:
        return
    kept: list[Check] = []
    deselected: list[Check] = []
    for check in checks:
        selected = (keyword is None or keyword.evaluate(partial(matches_keyword, check))) and (
            markexpr is None or markexpr.evaluate(check.marks.__contains__)
        )
        (kept if selected else deselected).append(check)
    if deselected:
        config.deselect(deselected)
        checks[:] = kept


def matches_keyword(check: Check, word: str) -> bool:
    """Whether ``word`` is, ignoring case, part of the check's id, nodeid, metric or a mark.

    The nodeid is taken without the naming rule's ``.sparsecheck.yaml``, which every spec file
    found in a folder has (else ``-k sparse`` would select every check).
    """
    word = word.lower()
    nodeid = check.nodeid
    for suffix in _SPEC_SUFFIXES:
        nodeid = nodeid.replace(f"{suffix}::", "::")
    return any(word in text.lower() for text in (check.id, nodeid, check.metric, *check.marks))


def _expression(config: Config, dest: str, flag: str) -> Expression | None:
    text = config.getoption(dest)
    if not text or not str(text).strip():
        return None
    try:
        return compile_expression(str(text))
    except ExpressionError as exc:
        raise UsageError(f"{flag}: bad expression {text!r}: {exc}") from None
