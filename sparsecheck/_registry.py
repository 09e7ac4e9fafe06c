"""What plugins register through the registry hooks: metrics and training backends by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sparsecheck.errors import PluginError

if TYPE_CHECKING:
    import pluggy

    from sparsecheck.metrics._api import Metric
    from sparsecheck.training._api import TrainingBackend


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Named = TypeVar("Named", bound=_Named)


def _registered(pm: pluggy.PluginManager, hook_name: str, kind: type, what: str) -> list[tuple[str, Any]]:
    """Everything plugins return from the registry hook ``hook_name`` (each an instance of
    ``kind``), with the plugin's name, in hook order."""
    found: list[tuple[str, Any]] = []
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        returned = impl.function() or ()
        for item in returned if isinstance(returned, Iterable) else [returned]:
            if not isinstance(item, kind):
                raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} returned {item!r}, not a {what}")
            found.append((impl.plugin_name, item))
    return found


def _by_name(owned: list[tuple[str, Named]], what: str) -> dict[str, Named]:
    """Items by their ``name``; a name registered twice is an error naming both plugins."""
    items: dict[str, Named] = {}
    owners: dict[str, str] = {}
    for plugin, item in owned:
        name = item.name
        if name in items:
            raise PluginError(
                f"{what} {name!r} is registered by both plugin {owners[name]!r} and plugin {plugin!r}"
            )
        items[name] = item
        owners[name] = plugin
    return items


def metric_owners(pm: pluggy.PluginManager) -> list[tuple[str, Metric]]:
    """Every metric any plugin registers, with the registering plugin's name, in hook order."""
    from sparsecheck.metrics._api import Metric

    return _registered(pm, "sparsecheck_add_metrics", Metric, "sparsecheck.Metric")


def collect_metrics(pm: pluggy.PluginManager) -> dict[str, Metric]:
    """Metrics by name; a name registered twice is an error naming both plugins."""
    return _by_name(metric_owners(pm), "metric")


def collect_backends(pm: pluggy.PluginManager) -> dict[str, TrainingBackend]:
    """Training backends by name; a name registered twice is an error naming both plugins."""
    from sparsecheck.training._api import TrainingBackend

    owned = _registered(pm, "sparsecheck_add_backends", TrainingBackend, "sparsecheck TrainingBackend")
    return _by_name(owned, "training backend")
