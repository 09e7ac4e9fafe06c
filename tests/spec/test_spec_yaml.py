"""YAML loading with locations: every key, mapping, sequence and scalar knows its file:line:column."""

from __future__ import annotations

import textwrap

import pytest
from spec_support import where

from sparsecheck.errors import SpecError
from sparsecheck.spec._located import YamlList, YamlMap, locate, to_plain
from sparsecheck.spec._yaml import load_yaml

TEXT = """\
top:
  name: value
  numbers: [1, 2.5, -3]
  nested:
    - {a: 1}
    - plain
"""


def test_every_node_has_its_location() -> None:
    doc = load_yaml(TEXT, "f.yaml")
    assert isinstance(doc, YamlMap)
    top = doc["top"]
    assert isinstance(top, YamlMap)
    assert str(doc.key_location("top")) == where("f.yaml", TEXT, "top")
    assert str(top.location) == where("f.yaml", TEXT, "name")
    assert str(top.key_location("numbers")) == where("f.yaml", TEXT, "numbers")
    assert str(top.value_location("name")) == where("f.yaml", TEXT, "value")
    numbers = top["numbers"]
    assert isinstance(numbers, YamlList)
    assert str(numbers.location) == where("f.yaml", TEXT, "[1,")
    assert str(numbers.item_location(1)) == where("f.yaml", TEXT, "2.5")
    assert str(numbers.item_location(2)) == where("f.yaml", TEXT, "-3")
    nested = top["nested"]
    assert str(nested[0].value_location("a")) == where("f.yaml", TEXT, "1}")
    assert str(nested.item_location(1)) == where("f.yaml", TEXT, "plain")


def test_locate_follows_a_path_of_keys_and_indices() -> None:
    doc = load_yaml(TEXT, "f.yaml")
    assert str(locate(doc, ["top", "nested", 0, "a"], doc.location)) == where("f.yaml", TEXT, "1}")
    # A path that leaves the document stops at the deepest node found.
    assert str(locate(doc, ["top", "missing", 3], doc.location)) == where("f.yaml", TEXT, "name")


def test_values_are_plain_python_values() -> None:
    doc = load_yaml(TEXT, "f.yaml")
    assert to_plain(doc) == {"top": {"name": "value", "numbers": [1, 2.5, -3], "nested": [{"a": 1}, "plain"]}}
    assert type(to_plain(doc)["top"]) is dict


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        ("1e-5", 1e-5),
        ("1.0e-5", 1e-5),
        ("-2E3", -2000.0),
        (".5", 0.5),
        ("3", 3),
        ("1_000", 1000),
        ("2024-01-01", "2024-01-01"),
        ("null", None),
        ("true", True),
        ("'1e-5'", "1e-5"),
    ],
)
def test_scalars_follow_yaml_1_2_floats_and_keep_dates_as_text(scalar: str, expected: object) -> None:
    value = load_yaml(f"x: {scalar}\n", "f.yaml")["x"]
    assert value == expected
    assert type(value) is type(expected)


def test_keys_are_the_text_written() -> None:
    doc = load_yaml("on: 1\n2: b\nnull: c\n", "f.yaml")
    assert list(doc) == ["on", "2", "null"]


def test_merge_keys_work_and_own_keys_win() -> None:
    doc = load_yaml("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert to_plain(doc["m"]) == {"x": 1, "y": 3}


def test_duplicate_key_is_an_error_at_the_second_key() -> None:
    text = textwrap.dedent(
        """\
        a: 1
        b:
          c: 1
          c: 2
        """
    )
    with pytest.raises(SpecError) as info:
        load_yaml(text, "f.yaml")
    assert str(info.value) == f"{where('f.yaml', text, 'c: 2')}: duplicate key 'c' (first at line 3)"


@pytest.mark.parametrize(
    ("text", "needle", "message"),
    [
        ("a: [1, 2\nb: 3\n", ": 3", "expected ',' or ']'"),
        ("a: b: c\n", ": c", "mapping values are not allowed here"),
        ("a: 1\n---\nb: 2\n", "---", "expected a single document in the stream, but found another document"),
        ("a: *nope\n", "*nope", "found undefined alias 'nope'"),
        ("a:\n\t- 1\n", "\t", "found character '\\t' that cannot start any token"),
    ],
)
def test_bad_yaml_points_at_the_yaml_mark(text: str, needle: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        load_yaml(text, "f.yaml")
    assert str(info.value).startswith(f"{where('f.yaml', text, needle)}: bad YAML: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_mapping_as_key_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"f.yaml:1:2: a mapping key must be a plain name"):
        load_yaml("{[1]: 2}\n", "f.yaml")
