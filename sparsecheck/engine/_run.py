"""The built-in engine: one read pass over the checkpoints feeds every check's reducer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import click

from sparsecheck._config import OptionRegistry, ReadProgress
from sparsecheck._markers import hookimpl
from sparsecheck.engine._cache import ResultCache
from sparsecheck.engine._passplan import PassPlan
from sparsecheck.engine._plan import PlannedCheck, Planner, add_readers, storage_order, where_stored
from sparsecheck.engine._prefetch import available_cores, prepared
from sparsecheck.engine._provenance import report_entries, tensor_hash
from sparsecheck.engine._readahead import ReadAhead
from sparsecheck.metrics._api import MetricResult

if TYPE_CHECKING:
    from sparsecheck._config import Session
    from sparsecheck.spec._model import Check


#: The smallest pass that gets worker processes by default (smaller ones finish before a pool
#: of workers would start).
PARALLEL_MIN_BYTES = 1 << 26


@hookimpl(trylast=True)
def sparsecheck_run_checks(
    session: Session, checks: Sequence[Check]
) -> dict[str, MetricResult | BaseException]:
    config = session.config
    hashing = bool(config.getoption("hash", False))
    planner = Planner(config.hook)
    cache = ResultCache.for_config(config)
    try:
        planned = [planner.plan(check, config.metric(check.metric)) for check in checks]
        add_readers(session.checkpoints, planner.describe_readers())
        results: dict[str, MetricResult | BaseException] = {}
        keys: dict[str, str] = {}
        hashes: dict[str, dict[str, str]] | None = {rid: {} for rid in planner.readers} if hashing else None
        for item in planned:
            if cache.enabled and item.error is None and item.metric.cacheable and hashes is None:
                keys[item.check.nodeid] = key = cache.key(item, planner.readers)
                cached = cache.get(key)
                if cached is not None:
                    results[item.check.nodeid] = cached
                    session.cached.add(item.check.nodeid)
        to_read = [p for p in planned if p.error is None and p.check.nodeid not in results]
        executor = config.getoption("executor") or "local"
        read_pass(planner, to_read, config.hook, config.getoption("workers"), executor, hashes)
        for rid, fields in report_entries(hashes or {}).items():
            session.checkpoints[rid].update(fields)
        for item in planned:
            if item.check.nodeid not in results:
                results[item.check.nodeid] = result = finish(item)
                if isinstance(result, MetricResult) and item.check.nodeid in keys:
                    _cache_result(cache, keys[item.check.nodeid], result)
        session.durations.update({p.check.nodeid: p.seconds for p in planned})
        return results
    finally:
        planner.close()


def _cache_result(cache: ResultCache, key: str, result: MetricResult) -> None:
    """Store ``result``; a cache folder that cannot be written is a warning, not a failure."""
    try:
        cache.put(key, result)
    except OSError as exc:
        cache.enabled = False
        click.echo(f"sparsecheck: warning: cannot write the result cache: {exc}", err=True)


def read_pass(
    planner: Planner,
    planned: Sequence[PlannedCheck],
    hook: object,
    workers: int | None = 1,
    executor: str = "local",
    hashes: dict[str, dict[str, str]] | None = None,
) -> None:
    """Read each needed tensor of each checkpoint once and hand it to every reducer wanting it.

    With ``workers`` > 1, reducers' ``prepare`` runs in that many worker processes ahead of
    ``update``; None: as many as there are cores, for a pass reading at least
    :data:`PARALLEL_MIN_BYTES` from local checkpoints (remote ones read ahead in threads).
    ``executor="ray"``: ``prepare`` runs as Ray tasks (:mod:`._ray`; None: one task in flight
    per CPU of the cluster, two ahead).  With ``hashes`` (reader id → {}), each tensor's
    content hash is put there by stored name.
    """
    readers = planner.readers
    where = where_stored(planned)
    names = storage_order(where, list(readers))
    wanted: dict[str, list[PlannedCheck]] = {name: [] for name in names}
    for item in planned:
        for name in item.names:
            wanted[name].append(item)
    plan = PassPlan(where, wanted, readers)
    nbytes = {name: sum(s.nbytes for s in where[name].values()) for name in names}
    total_bytes = sum(nbytes.values())
    remote = any(reader.remote for reader in readers.values())
    if workers is None and executor == "local":
        workers = available_cores() if total_bytes >= PARALLEL_MIN_BYTES and not remote else 1
    if executor == "local" and workers is not None and workers <= 1:
        # a remote reader fetches ahead in threads; forked workers fetch their own
        for rid, reader in readers.items():
            reader.will_read([where[name][rid].meta.name for name in names if rid in where[name]])
    ahead = ReadAhead.for_pass(names, where, readers) if executor == "local" else None
    try:
        _reduce(plan, names, nbytes, workers, executor, hook, ahead, hashes)
    finally:
        if ahead is not None:
            ahead.close()


def _reduce(
    plan: PassPlan,
    names: Sequence[str],
    nbytes: Mapping[str, int],
    workers: int | None,
    executor: str,
    hook: object,
    ahead: ReadAhead | None,
    hashes: dict[str, dict[str, str]] | None,
) -> None:
    """Hand each prepared name to its reducers' ``update``, in storage order."""
    total_bytes = sum(nbytes.values())
    done_bytes, start = 0, time.perf_counter()
    for index, entry in enumerate(prepared(names, nbytes, plan, workers, executor)):
        for position, item in enumerate(entry.items):
            if position in entry.errors:
                item.error = item.error or entry.errors[position]
            if item.error is not None or item.reducer is None:
                continue
            began = time.perf_counter()
            try:
                item.reducer.update(entry.group)
            except Exception as exc:
                item.error = exc
            item.seconds += time.perf_counter() - began
        for position, seconds in enumerate(entry.seconds):
            entry.items[position].seconds += seconds
        if hashes is not None:  # every tensor of the name, as read (most are loaded already)
            for rid, stored in plan.where[entry.group.name].items():
                hashes[rid][stored.meta.name] = tensor_hash(entry.group.array(rid))
        plan.release(entry.group.name)
        if ahead is not None:
            ahead.advance(index + 1)
        done_bytes += nbytes[entry.group.name]
        hook.sparsecheck_read_progress(  # type: ignore[attr-defined]
            progress=ReadProgress(index + 1, len(names), done_bytes, total_bytes, time.perf_counter() - start)
        )


def finish(item: PlannedCheck) -> MetricResult | BaseException:
    """The check's result (pairing notes added), or the error that stopped it."""
    if item.error is not None or item.reducer is None:
        return item.error or RuntimeError("no reducer")
    began = time.perf_counter()
    try:
        result = item.reducer.finish(item.skipped)
    except Exception as exc:
        return exc
    finally:
        item.seconds += time.perf_counter() - began
    result.notes[:0] = list(item.notes)
    return result


@hookimpl
def sparsecheck_addoption(options: OptionRegistry) -> None:
    options.add(
        "--workers",
        "workers",
        type=click.IntRange(min=1),
        help=(
            "Worker processes computing tensors' metrics ahead of the read pass (default: one per "
            "CPU core when the pass reads 64 MiB or more; 1: none). Linux only."
        ),
    )
    options.add(
        "--executor",
        "executor",
        type=click.Choice(["local", "ray"]),
        help=(
            "Where reducers prepare tensors: local (forked worker processes, --workers) or ray "
            "(Ray tasks on the cluster at RAY_ADDRESS, or on a local Ray instance started for the "
            "run; needs pip install 'sparsecheck[ray]'). Results are the same either way."
        ),
    )
