"""Hub ids (``org/name`` or ``org/name@revision``) resolved to a local snapshot.

The revision is resolved and the ``*.json`` files fetched first (config and index); then only
the weight files the layout names: ``model.safetensors``, or the shards of
``model.safetensors.index.json`` -- never other ``*.safetensors`` a repository also holds (the
consolidated duplicates some ship).  Files come through ``huggingface_hub.snapshot_download``
(the optional ``hub`` extra) into the usual Hugging Face cache; ``HF_HUB_CACHE``, ``HF_HOME``
and ``HF_HUB_OFFLINE`` are read when the id is resolved, so an offline run finds snapshots
already in the cache.  The snapshot then opens like any folder.  An online download is a
progress task (huggingface_hub draws its own bars per file on a terminal).  To read only the
selected tensors' bytes instead, without downloading, name the repository as a URL:
``hf://org/name`` (:mod:`sparsecheck.checkpoints._remote`).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from sparsecheck import _progress as progress
from sparsecheck._extras import require
from sparsecheck._markers import hookimpl
from sparsecheck.checkpoints._formats import SAFETENSORS_FILE, SAFETENSORS_INDEX, open_local, read_weight_map
from sparsecheck.checkpoints._reader import CheckpointReader
from sparsecheck.errors import CheckpointError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(@[^\s@]+)?")
#: Fetched first: the config and the index of shards.
METADATA_PATTERNS = ["*.json"]
_TRUE = {"1", "ON", "YES", "TRUE"}


@hookimpl
def sparsecheck_open_checkpoint(source: str, path: Path | None) -> CheckpointReader | None:
    if path is not None or not HUB_ID.fullmatch(source):
        return None
    repo_id, _, revision = source.partition("@")
    snapshot = download_snapshot(repo_id, revision or None)
    if not any(snapshot.glob("*.safetensors")):
        raise CheckpointError(f"{source}: the hub snapshot at {snapshot} has no .safetensors weights")
    return open_local(source, snapshot)


def download_snapshot(repo_id: str, revision: str | None) -> Path:
    """The local snapshot folder of ``repo_id`` at ``revision`` (json files and the weight files
    of its layout only)."""
    hub_id = repo_id + (f"@{revision}" if revision else "")
    require("huggingface_hub", f"{hub_id}: no such local path; reading it as a hub id")
    from huggingface_hub import snapshot_download

    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None
    )
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    shown = contextlib.nullcontext() if offline else progress.task(f"download {hub_id}", unit="files")
    try:
        with shown:
            folder = Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    cache_dir=cache_dir,
                    local_files_only=offline,
                    allow_patterns=METADATA_PATTERNS,
                )
            )
            index = folder / SAFETENSORS_INDEX
            weights = sorted(set(read_weight_map(index).values())) if index.is_file() else [SAFETENSORS_FILE]
            folder = Path(
                snapshot_download(
                    repo_id,
                    revision=folder.name,  # the commit the first call resolved
                    cache_dir=cache_dir,
                    local_files_only=offline,
                    allow_patterns=[*METADATA_PATTERNS, *weights],
                )
            )
    except CheckpointError:
        raise
    except Exception as exc:  # network, cache and repo errors of every kind
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(
            f"{hub_id}: no such local path, and the hub id could not be resolved: {reason}"
        ) from None
    return folder
