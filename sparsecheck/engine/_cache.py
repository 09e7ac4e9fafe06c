"""The result cache: a check's metric result, keyed by what it was computed from.

Results live under ``<cache dir>/results/`` (never in a checkpoint folder), one JSON file per
key.  The key hashes the sparsecheck version, the metric (name, implementing class, and the
source of the Python files in its module's folder, so an edited metric recomputes), its
arguments, and for every checkpoint the check reads its sampled content fingerprint plus the
size and modification time of each of its files; a file named by an argument (a mask file, or one in a list)
adds its size and modification time.  So an unchanged suite re-runs without reading a tensor,
and touching or replacing any input recomputes.  ``--no-cache`` skips it; ``--cache-clear``
empties it first.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsecheck._atomic import write_text_atomic
from sparsecheck._markers import hookimpl
from sparsecheck._version import __version__
from sparsecheck.metrics._api import MetricResult

if TYPE_CHECKING:
    from sparsecheck._config import Config, OptionRegistry
    from sparsecheck.checkpoints._reader import CheckpointReader
    from sparsecheck.engine._plan import PlannedCheck

RESULTS = "results"


def _file_stats(path: Path) -> list[tuple[str, int, int]]:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = []
    for file in files:
        stat = file.stat()
        stats.append((file.name, stat.st_size, stat.st_mtime_ns))
    return stats


@functools.cache
def _code_hash(module_name: str) -> str:
    """A hash of the Python files beside the module (a metric's implementation and helpers)."""
    file = getattr(sys.modules.get(module_name), "__file__", None)
    digest = hashlib.sha256()
    if file:
        for source in sorted(Path(file).parent.glob("*.py")):
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


class ResultCache:
    """Get and put metric results by key; a no-op when disabled."""

    def __init__(self, folder: Path, enabled: bool) -> None:
        self.folder = folder / RESULTS
        self.enabled = enabled
        self._identities: dict[str, Any] = {}

    @classmethod
    def for_config(cls, config: Config) -> ResultCache:
        return cls(config.cache_dir, not config.getoption("no_cache", False))

    def key(self, item: PlannedCheck, readers: Mapping[str, CheckpointReader]) -> str:
        """The key of ``item``'s result: its metric, arguments and inputs' identities."""
        metric = type(item.metric)
        inputs = {rid: self._identity(rid, readers[rid]) for rid in item.reader_ids}
        values = [v for value in item.args.values() for v in (value if isinstance(value, list) else [value])]
        files = {
            str(value): _file_stats(Path(value))
            for value in values
            if isinstance(value, str) and value not in inputs and Path(value).is_file()
        }
        material = {
            "sparsecheck": __version__,
            "metric": [
                item.check.metric,
                metric.__module__,
                metric.__qualname__,
                _code_hash(metric.__module__),
            ],
            "args": item.args,
            "inputs": inputs,
            "files": files,
        }
        text = json.dumps(material, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _identity(self, rid: str, reader: CheckpointReader) -> Any:
        if rid not in self._identities:
            stats = [] if reader.remote else _file_stats(reader.path)  # remote: sizes and ETags
            self._identities[rid] = [reader.fingerprint(), stats]
        return self._identities[rid]

    def get(self, key: str) -> MetricResult | None:
        if not self.enabled:
            return None
        try:
            data = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            return MetricResult.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, result: MetricResult) -> None:
        if self.enabled:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.folder / f"{key}.json", json.dumps(result.to_dict(), default=_plain))


def _plain(value: Any) -> Any:
    """numpy scalars and other number-likes as plain JSON numbers."""
    return value.item() if hasattr(value, "item") else str(value)


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    options.add("--no-cache", "no_cache", is_flag=True, help="Neither read nor write cached results.")
    options.add("--cache-clear", "cache_clear", is_flag=True, help="Empty the result cache before running.")


@hookimpl
def sparsecheck_configure(config: Config) -> None:
    if config.getoption("cache_clear"):
        shutil.rmtree(config.cache_dir / RESULTS, ignore_errors=True)
