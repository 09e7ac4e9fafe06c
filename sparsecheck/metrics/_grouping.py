"""Grouping tensor names: per layer and per module type (METRICS.md, "Granularity")."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The group of tensors outside any numbered layer (embeddings, final norm, head).
OTHER = "other"
GRANULARITIES = ("tensor", "layer", "module")
_INDEX = re.compile(r"(?:^|\.)(\d+)(?=\.|$)", re.ASCII)
_DIGITS = re.compile(r"(\d+)", re.ASCII)


def layer_of(name: str) -> str:
    """The layer a tensor belongs to: its name up to the first integer path component
    (``model.layers.3.mlp.up_proj.weight`` → ``model.layers.3``), or ``other``."""
    match = _INDEX.search(name)
    return name[: match.end(1)] if match else OTHER


def module_of(name: str) -> str:
    """The module type: the name with its layer index replaced by ``*``."""
    match = _INDEX.search(name)
    return name if match is None else f"{name[: match.start(1)]}*{name[match.end(1) :]}"


def group_key(granularity: str, name: str) -> str:
    """The group of ``name`` at ``granularity`` (``tensor``, ``layer`` or ``module``)."""
    if granularity == "layer":
        return layer_of(name)
    if granularity == "module":
        return module_of(name)
    return name


def sort_keys(keys: Iterable[str]) -> list[str]:
    """Natural order (``layers.2`` before ``layers.10``), ``other`` last."""

    def natural(key: str) -> tuple[bool, list[int | str]]:
        # re.split with a group alternates text and the captured digit runs (odd positions).
        parts: list[int | str] = [int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(key))]
        return key == OTHER, parts

    return sorted(keys, key=natural)
