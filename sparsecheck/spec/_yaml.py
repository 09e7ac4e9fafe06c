"""Load YAML keeping the file:line:column of every key, mapping, sequence and scalar.

Mappings load as :class:`~sparsecheck.spec._located.YamlMap` and sequences as
:class:`~sparsecheck.spec._located.YamlList`: plain ``dict`` and ``list`` subclasses that also
know where they, their keys and their items stand.  Scalars stay plain Python values; their place
is kept by the container holding them.  Keys are always the
text written (``on:`` stays ``"on"``), a duplicate key is an error, floats follow YAML 1.2
(``1e-5`` is a number) and dates stay strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from sparsecheck.errors import Location, SpecError
from sparsecheck.spec._located import YamlList, YamlMap

_FLOAT_TAG = "tag:yaml.org,2002:float"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_PATTERN = (
    r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+"
    r"|[-+]?[0-9][0-9_]*\.[0-9_]*"
    r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN))$"
)


#: The deepest nesting of mappings and sequences a spec (or a ``--var`` value) may have.
MAX_DEPTH = 100
#: The most values a document may hold once every alias is expanded.
MAX_NODES = 100_000


class _LocatingLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` building :class:`YamlMap` / :class:`YamlList` with locations."""

    def __init__(self, text: str, filename: str) -> None:
        super().__init__(text)
        self.filename = filename
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose as PyYAML does, refusing nesting deeper than :data:`MAX_DEPTH` (the composer
        recurses once per level)."""
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise SpecError(
                    f"bad YAML: nested more than {MAX_DEPTH} deep",
                    Location(self.filename, mark.line + 1, mark.column + 1),
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def location(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.filename, mark.line + 1, mark.column + 1)

    def construct_located_map(self, node: yaml.MappingNode) -> Iterator[YamlMap]:
        data = YamlMap(self.location(node))
        yield data
        self._reject_duplicate_keys(node)
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError("a mapping key must be a plain name", self.location(key_node))
            value = self.construct_object(value_node, deep=True)
            data.put(key_node.value, value, self.location(key_node), self.location(value_node))

    def construct_located_list(self, node: yaml.SequenceNode) -> Iterator[YamlList]:
        data = YamlList(self.location(node))
        yield data
        for item_node in node.value:
            data.put(self.construct_object(item_node, deep=True), self.location(item_node))

    def _reject_duplicate_keys(self, node: yaml.MappingNode) -> None:
        seen: dict[str, Location] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            location = self.location(key_node)
            if key_node.value in seen:
                first = seen[key_node.value]
                raise SpecError(f"duplicate key {key_node.value!r} (first at line {first.line})", location)
            seen[key_node.value] = location


_LocatingLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_FLOAT_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LocatingLoader.add_implicit_resolver(_FLOAT_TAG, re.compile(_FLOAT_PATTERN), list("-+0123456789."))
_LocatingLoader.add_constructor(
    "tag:yaml.org,2002:map",
    _LocatingLoader.construct_located_map,
)
_LocatingLoader.add_constructor(
    "tag:yaml.org,2002:seq",
    _LocatingLoader.construct_located_list,
)


def load_yaml(text: str, filename: str) -> Any:
    """Parse one YAML document; bad YAML is a :class:`SpecError` at the YAML error's mark.

    Nesting deeper than :data:`MAX_DEPTH`, aliases that would expand to more than
    :data:`MAX_NODES` nodes (an "alias bomb") and recursive aliases are refused before anything
    is built from the document.
    """
    loader: _LocatingLoader | None = None
    try:
        loader = _LocatingLoader(text, filename)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, loader)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename)
        problem = ", ".join(text for text in (exc.context, exc.problem) if text) or "unreadable"
        raise SpecError(f"bad YAML: {problem}", location) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, most controls)
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise SpecError(
            f"bad YAML: character #x{exc.character:04x} is not allowed in YAML",
            Location(filename, line, column),
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"bad YAML: {exc}", Location(filename)) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expansion(root: yaml.Node, loader: _LocatingLoader) -> None:
    """Refuse a node graph whose expansion (every alias copied out) is deeper than
    :data:`MAX_DEPTH`, has more than :data:`MAX_NODES` nodes, or never ends (a recursive alias).

    Aliased nodes are shared, so each node is visited once (depth-first, without recursion) and
    its expanded size and depth are computed from its children's.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_NODES:
                raise SpecError(
                    f"bad YAML: aliases expand to more than {MAX_NODES} values", loader.location(node)
                )
            if depth[key] > MAX_DEPTH:
                raise SpecError(f"bad YAML: nested more than {MAX_DEPTH} deep", loader.location(node))
            continue
        if key in size:
            continue
        if key in on_path:
            raise SpecError("bad YAML: a recursive alias (it contains itself)", loader.location(node))
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []
