"""Mappings and sequences that know where they stand (file:line:column), as a spec loads them.

The YAML loader (:mod:`sparsecheck.spec._yaml`) builds them; everything that reads a spec uses
them, without importing a YAML parser (``sparsecheck diff`` never loads one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sparsecheck.errors import Location


class YamlMap(dict[str, Any]):
    """A mapping that knows where it, each of its keys and each of its values stand."""

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.key_locations: dict[str, Location] = {}
        self.value_locations: dict[str, Location] = {}

    def put(self, key: str, value: Any, key_location: Location, value_location: Location) -> None:
        self[key] = value
        self.key_locations[key] = key_location
        self.value_locations[key] = value_location

    def key_location(self, key: str) -> Location:
        return self.key_locations.get(key, self.location)

    def value_location(self, key: str) -> Location:
        return self.value_locations.get(key, self.location)

    def map_values(self, function: Callable[[Any, Location], Any]) -> YamlMap:
        """A copy whose values are ``function(value, value_location)``, locations kept."""
        copy = YamlMap(self.location)
        for key, value in self.items():
            location = self.value_location(key)
            copy.put(key, function(value, location), self.key_location(key), location)
        return copy


class YamlList(list[Any]):
    """A sequence that knows where it and each of its items stand."""

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.item_locations: list[Location] = []

    def put(self, value: Any, location: Location) -> None:
        self.append(value)
        self.item_locations.append(location)

    def item_location(self, index: int) -> Location:
        return self.item_locations[index] if index < len(self.item_locations) else self.location

    def map_items(self, function: Callable[[Any, Location], Any]) -> YamlList:
        """A copy whose items are ``function(item, item_location)``, locations kept."""
        copy = YamlList(self.location)
        for index, value in enumerate(self):
            location = self.item_location(index)
            copy.put(function(value, location), location)
        return copy


def location_of(value: Any, default: Location) -> Location:
    """The location of a container, else ``default`` (the place its parent recorded)."""
    return value.location if isinstance(value, YamlMap | YamlList) else default


def locate(root: Any, path: Iterable[str | int], fallback: Location) -> Location:
    """The location of the value at ``path`` (keys and indices) below ``root``."""
    location = location_of(root, fallback)
    node = root
    for step in path:
        if isinstance(node, YamlMap) and isinstance(step, str) and step in node:
            location = node.value_location(step)
        elif isinstance(node, YamlList) and isinstance(step, int) and step < len(node):
            location = node.item_location(step)
        else:
            break
        node = node[step]
        location = location_of(node, location)
    return location


def to_plain(value: Any) -> Any:
    """``value`` with every YamlMap/YamlList turned into a plain dict/list."""
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_plain(item) for item in value]
    return value
