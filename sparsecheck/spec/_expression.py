r"""The boolean expressions of ``-k`` and ``-m`` (pytest's ``mark/expression.py``, simplified).

Grammar::

    expression: expr EOF
    expr:       and_expr ('or' and_expr)*
    and_expr:   not_expr ('and' not_expr)*
    not_expr:   'not' not_expr | '(' expr ')' | ident
    ident:      (\w|:|\+|-|\.|\[|\]|\\|/)+

An identifier is true when the caller's matcher says so.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

Matcher = Callable[[str], bool]

_TOKEN = re.compile(r"(\()|(\))|((?:\w|:|\+|-|\.|\[|\]|\\|/)+)")
_KEYWORDS = ("and", "or", "not")
_IDENT = "identifier"
_EOF = "end of input"


class ExpressionError(Exception):
    """A malformed expression; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.column = column


class Expression(ABC):
    """A parsed expression."""

    @abstractmethod
    def evaluate(self, matcher: Matcher) -> bool:
        """Whether the expression holds when each identifier means ``matcher(identifier)``."""


@dataclass(frozen=True)
class Ident(Expression):
    name: str

    def evaluate(self, matcher: Matcher) -> bool:
        return matcher(self.name)


@dataclass(frozen=True)
class Not(Expression):
    operand: Expression

    def evaluate(self, matcher: Matcher) -> bool:
        return not self.operand.evaluate(matcher)


@dataclass(frozen=True)
class And(Expression):
    left: Expression
    right: Expression

    def evaluate(self, matcher: Matcher) -> bool:
        return self.left.evaluate(matcher) and self.right.evaluate(matcher)


@dataclass(frozen=True)
class Or(Expression):
    left: Expression
    right: Expression

    def evaluate(self, matcher: Matcher) -> bool:
        return self.left.evaluate(matcher) or self.right.evaluate(matcher)


@dataclass(frozen=True)
class _Token:
    #: ``(``, ``)``, a keyword, ``identifier`` or ``end of input``.
    kind: str
    text: str
    column: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return [*tokens, _Token(_EOF, "", position + 1)]
        match = _TOKEN.match(text, position)
        if match is None:
            raise ExpressionError(f"unexpected character {text[position]!r}", position + 1)
        word = match.group(0)
        kind = word if word in ("(", ")", *_KEYWORDS) else _IDENT
        tokens.append(_Token(kind, word, position + 1))
        position = match.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.position]

    def accept(self, kind: str) -> _Token | None:
        token = self.current
        if token.kind != kind:
            return None
        self.position += 1
        return token

    def fail(self, expected: str) -> ExpressionError:
        return ExpressionError(f"expected {expected}", self.current.column)

    def expression(self) -> Expression:
        result = self.or_expr()
        if self.accept(_EOF) is None:
            raise self.fail("'and', 'or' or the end")
        return result

    def or_expr(self) -> Expression:
        result = self.and_expr()
        while self.accept("or"):
            result = Or(result, self.and_expr())
        return result

    def and_expr(self) -> Expression:
        result = self.not_expr()
        while self.accept("and"):
            result = And(result, self.not_expr())
        return result

    def not_expr(self) -> Expression:
        if self.accept("not"):
            return Not(self.not_expr())
        if self.accept("("):
            inner = self.or_expr()
            if self.accept(")") is None:
                raise self.fail("')'")
            return inner
        token = self.accept(_IDENT)
        if token is None:
            raise self.fail("identifier")
        return Ident(token.text)


def compile_expression(text: str) -> Expression:
    """Parse ``text``; a malformed one raises :class:`ExpressionError` naming the column."""
    return _Parser(text).expression()
