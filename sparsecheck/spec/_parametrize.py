"""``parametrize`` (a product) and ``parametrize_zip`` (zipped lists): one check per combination."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from sparsecheck.errors import SpecError
from sparsecheck.spec._located import YamlMap, to_plain
from sparsecheck.spec._messages import show_value
from sparsecheck.spec._variables import Variables

PRODUCT_KEY = "parametrize"
ZIP_KEY = "parametrize_zip"


@dataclass(frozen=True)
class Combination:
    """One set of parameter values and its id suffix (``[rl_a-0.001]``, or ``""`` for none)."""

    params: dict[str, Any]
    suffix: str


def combinations(check: YamlMap, variables: Variables) -> list[Combination]:
    """Every combination of ``check``'s parameters: the product, times the zipped rows."""
    product = _lists(check, PRODUCT_KEY, variables)
    zipped = _lists(check, ZIP_KEY, variables)
    if not product and not zipped:
        return [Combination({}, "")]
    if zipped:
        lengths = {name: len(values) for name, values in zipped.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{name}: {length}" for name, length in lengths.items())
            raise SpecError(
                f"{ZIP_KEY}: the lists must be equally long ({shown})", check.value_location(ZIP_KEY)
            )
    clashes = [name for name in zipped if name in product]
    if clashes:
        raise SpecError(
            f"{ZIP_KEY}: variable {clashes[0]!r} is also in {PRODUCT_KEY}",
            check[ZIP_KEY].key_location(clashes[0]),
        )
    names = [*product, *zipped]
    product_rows = itertools.product(*(enumerate(values) for values in product.values()))
    zip_rows = list(zip(*(enumerate(values) for values in zipped.values()), strict=True))
    result = []
    for product_row, zip_row in itertools.product(product_rows, zip_rows or [()]):
        row = (*product_row, *zip_row)
        params = {name: value for name, (_, value) in zip(names, row, strict=True)}
        parts = [_id_part(name, value, index) for name, (index, value) in zip(names, row, strict=True)]
        result.append(Combination(params, f"[{'-'.join(parts)}]"))
    return result


def _lists(check: YamlMap, key: str, variables: Variables) -> dict[str, list[Any]]:
    """The variables under ``key``, each a non-empty list after substitution."""
    declared = check.get(key)
    if not isinstance(declared, YamlMap):
        return {}
    lists: dict[str, list[Any]] = {}
    for name, raw in declared.items():
        location = declared.value_location(name)
        values = to_plain(variables.substitute(raw, location))
        if not isinstance(values, list) or not values:
            raise SpecError(
                f"{key}.{name}: expected a non-empty list of values, got {show_value(values)}",
                location,
            )
        lists[name] = values
    return lists


def _id_part(name: str, value: Any, index: int) -> str:
    """A value as it shows in a check id: floats with ``:g``, lists/mappings as ``name<index>``."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return f"{name}{index}"
    return str(value)
