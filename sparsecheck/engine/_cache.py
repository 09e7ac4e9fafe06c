"""The result cache: a check's metric result, keyed by what it was computed from.

Results live under ``<cache dir>/results/`` (never in a checkpoint folder), one file per key:
a SHA-256 line, then the result's JSON; an entry that fails the check is recomputed with a
warning.  The key hashes the sparsecheck version, the metric (name, implementing class, and the
source of the Python files in its module's folder, so an edited metric recomputes), its
arguments, and for every checkpoint the check reads its sampled content fingerprint plus the
size and modification time of each of its files; a file named by an argument (a mask file, or one in a list)
adds its size and modification time.  So an unchanged suite re-runs without reading a tensor,
and touching or replacing any input recomputes.  ``--no-cache`` skips it; ``--cache-clear``
empties it first.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sparsecheck._atomic import write_text_atomic
from sparsecheck._cachedir import make_cache_dir
from sparsecheck._markers import hookimpl
from sparsecheck._version import __version__
from sparsecheck.metrics._api import MetricResult

if TYPE_CHECKING:
    from sparsecheck._config import Config, OptionRegistry
    from sparsecheck.checkpoints._reader import CheckpointReader
    from sparsecheck.engine._plan import PlannedCheck

RESULTS = "results"
#: Entries are a SHA-256 line and the result's JSON; older entries (plain JSON) are not looked up.
ENTRY_FORMAT = 2


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
            "entry_format": ENTRY_FORMAT,
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
        """The stored result, or None: when there is none, and when the entry fails its
        checksum or does not read back as a result (then with a warning, and removed)."""
        if not self.enabled:
            return None
        path = self.folder / f"{key}.json"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None
        checksum, _, payload = text.partition("\n")
        try:
            if hashlib.sha256(payload.encode()).hexdigest() != checksum:
                raise ValueError("checksum mismatch")
            result = MetricResult.from_dict(json.loads(payload))
            if result.value_field not in result.fields:
                raise ValueError(f"no value field {result.value_field!r}")
        except Exception as exc:  # whatever a damaged entry makes from_dict raise: recompute
            click.echo(f"sparsecheck: warning: {path}: damaged cache entry ({exc}); recomputing", err=True)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return result

    def put(self, key: str, result: MetricResult) -> None:
        """Store ``result`` under ``key``: a SHA-256 line, then the result's JSON."""
        if self.enabled:
            make_cache_dir(self.folder.parent)
            self.folder.mkdir(exist_ok=True)
            payload = json.dumps(result.to_dict(), default=_plain)
            checksum = hashlib.sha256(payload.encode()).hexdigest()
            write_text_atomic(self.folder / f"{key}.json", f"{checksum}\n{payload}")


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
