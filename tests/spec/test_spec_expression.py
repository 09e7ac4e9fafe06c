"""The -k/-m expression language: and, or, not, parentheses, identifiers; errors name the column."""

from __future__ import annotations

import itertools

import pytest

from sparsecheck.spec._expression import And, ExpressionError, Ident, Not, Or, compile_expression


def test_precedence_is_not_then_and_then_or() -> None:
    assert compile_expression("a or b and not c") == Or(Ident("a"), And(Ident("b"), Not(Ident("c"))))
    assert compile_expression("(a or b) and c") == And(Or(Ident("a"), Ident("b")), Ident("c"))
    assert compile_expression("not not a") == Not(Not(Ident("a")))
    assert compile_expression("a and b and c") == And(And(Ident("a"), Ident("b")), Ident("c"))


@pytest.mark.parametrize(
    ("text", "python"),
    [
        ("a", "a"),
        ("not a", "not a"),
        ("a and b", "a and b"),
        ("a or b and c", "a or (b and c)"),
        ("(a or b) and c", "(a or b) and c"),
        ("not (a and b) or c", "(not (a and b)) or c"),
        ("  a   or\tnot b ", "a or not b"),
    ],
)
def test_evaluation_agrees_with_python_on_every_assignment(text: str, python: str) -> None:
    expression = compile_expression(text)
    for values in itertools.product([False, True], repeat=3):
        env = dict(zip("abc", values, strict=True))
        assert expression.evaluate(env.__getitem__) == eval(python, {}, env)


def test_identifiers_take_pytest_characters() -> None:
    seen: list[str] = []

    def record(name: str) -> bool:
        seen.append(name)
        return False

    compile_expression("each-run[rl_a] or a/b.c:d+e").evaluate(record)
    assert seen == ["each-run[rl_a]", "a/b.c:d+e"]


def test_keywords_are_whole_words_only() -> None:
    assert compile_expression("android") == Ident("android")
    assert compile_expression("notes or order") == Or(Ident("notes"), Ident("order"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a and", "expected identifier at column 6"),
        ("", "expected identifier at column 1"),
        ("a b", "expected 'and', 'or' or the end at column 3"),
        ("(a or b", "expected ')' at column 8"),
        ("a )", "expected 'and', 'or' or the end at column 3"),
        ("not", "expected identifier at column 4"),
        ("a & b", "unexpected character '&' at column 3"),
        ("or a", "expected identifier at column 1"),
    ],
)
def test_bad_expressions_name_the_column(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert str(info.value) == message
    assert info.value.column == int(message.rsplit(" ", 1)[1])
