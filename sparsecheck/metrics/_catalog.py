"""The text of ``sparsecheck metrics``: every metric, its plugin and its arguments."""

from __future__ import annotations

import pluggy
from tabulate import tabulate

from sparsecheck._registry import metric_owners
from sparsecheck.metrics._api import REQUIRED


def format_metrics(pm: pluggy.PluginManager, verbose: bool) -> str:
    """One row per metric; with ``verbose``, each metric's arguments below it."""
    owners = sorted(metric_owners(pm), key=lambda pair: pair[1].name)
    rows = [
        (m.name, plugin, m.value_field, ", ".join(m.granularities) or "-", m.summary) for plugin, m in owners
    ]
    text = tabulate(rows, headers=["metric", "plugin", "value", "per", "summary"], tablefmt="simple")
    if not verbose:
        return text
    blocks = [text]
    for _, metric in owners:
        params = [
            (
                p.name,
                p.kind + (f" {'|'.join(p.choices)}" if p.choices else ""),
                "required" if p.default is REQUIRED else repr(p.default),
                p.help,
            )
            for p in metric.all_params()
        ]
        blocks.append(
            f"\n{metric.name} arguments:\n" + tabulate(params, headers=["arg", "kind", "default", "help"])
        )
    return "\n".join(blocks)
