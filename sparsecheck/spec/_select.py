"""``-k EXPR`` and ``-m MARKEXPR``: keep the checks whose keywords or marks match.

With ``-m`` an identifier is true when the check has that mark.  With ``-k`` it is true when
it is, ignoring case, part of the check's id, its spec file's name, its metric's name or one of
its marks.
"""

from __future__ import annotations

from functools import partial

from sparsecheck._config import Config, OptionRegistry
from sparsecheck._markers import hookimpl
from sparsecheck.errors import UsageError
from sparsecheck.spec._expression import Expression, ExpressionError, compile_expression
from sparsecheck.spec._model import Check
from sparsecheck.spec._naming import SPEC_GLOBS

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
    """Whether ``word`` is, ignoring case, part of the check's id, its spec file's name (without
    the naming rule's ``.sparsecheck.yaml``, which every collected file has), its metric or a mark.
    Folder names are not matched: they would select every check below them."""
    word = word.lower()
    file_name = check.spec_path.name
    for suffix in _SPEC_SUFFIXES:
        file_name = file_name.removesuffix(suffix)
    texts = (f"{file_name}::{check.id}", check.metric, *check.marks)
    return any(word in text.lower() for text in texts)


def _expression(config: Config, dest: str, flag: str) -> Expression | None:
    text = config.getoption(dest)
    if not text or not str(text).strip():
        return None
    try:
        return compile_expression(str(text))
    except ExpressionError as exc:
        raise UsageError(f"{flag}: bad expression {text!r}: {exc}") from None
