"""Mask files given to a metric in place of runs: opened, paired by name like checkpoints, and
matched against the base the engine streams (``mask_overlap``, ``mask_agreement``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparsecheck.checkpoints._pairing import Pairing, pair_tensors
from sparsecheck.errors import CheckpointError
from sparsecheck.metrics._api import SkippedTensor
from sparsecheck.metrics._equality import EqualityPolicy
from sparsecheck.metrics._maskfile import MaskFile


class MaskSet:
    """Mask files by label (``mask_a`` → path, …), opened and paired by tensor name.

    With a base, :meth:`read` gives the masks of each name the engine streams and records the
    names that do not pair (:meth:`finish` turns them into an error or skipped tensors); without
    one the metric reads :attr:`pairing`'s names itself.
    """

    def __init__(self, metric: str, paths: Mapping[str, str], args: Mapping[str, Any]) -> None:
        self.metric = metric
        self.paths = dict(paths)
        self.on_mismatch = args.get("on_mismatch", "error")
        self.files: list[MaskFile] = []
        described = ", ".join(f"{label} {path}" for label, path in self.paths.items())
        try:
            self.files.extend(MaskFile.open(path) for path in self.paths.values())
            self.pairing: Pairing = pair_tensors(
                dict(zip(self.paths, self.files, strict=True)),
                args.get("include", ()),
                args.get("exclude", ()),
                self.on_mismatch,
                context=f"{metric} ({described})",
            )
        except BaseException:
            self.close()
            raise
        self.skipped_names = {s.name for s in self.pairing.skipped}
        #: Tensors of the base that do not pair with the mask files → why.
        self.unpaired: dict[str, str] = {}
        self.read_names: set[str] = set()

    def policy(self) -> EqualityPolicy:
        return self.files[0].policy

    def numel(self, name: str) -> int:
        return self.files[0].tensors()[name].meta.numel

    def notes(self) -> list[str]:
        """The pairing's notes, and whether the files disagree on policy or base."""
        labels = list(self.paths)
        notes = list(self.pairing.notes)
        policies = {(f.metadata["policy"], f.metadata["tol"]) for f in self.files}
        if len(policies) > 1:
            described = ", ".join(
                f"{label} {f.policy.describe()}" for label, f in zip(labels, self.files, strict=True)
            )
            notes.append(f"the masks use different policies: {described}")
        bases = {f.metadata.get("base_fingerprint") for f in self.files}
        if len(bases) > 1:
            together = " and ".join(labels) if len(labels) == 2 else ", ".join(labels)
            notes.append(f"{together} were made from different base checkpoints (fingerprints differ)")
        return notes

    def read(self, name: str, shape: tuple[int, ...]) -> list[np.ndarray] | None:
        """Every file's bool mask of ``name`` (a base tensor of ``shape``); None, noted, when it
        does not pair."""
        if name in self.skipped_names:
            return None
        if name not in self.pairing.names:
            self.unpaired[name] = "in base, not in the mask files"
            return None
        mask_shape = self.files[0].shape(name)
        if mask_shape != shape:
            self.unpaired[name] = f"shape {shape} in base vs {mask_shape} in the mask files"
            return None
        self.read_names.add(name)
        return [file.read(name) for file in self.files]

    def finish(self, with_base: bool) -> tuple[list[str], list[SkippedTensor]]:
        """The notes and skipped tensors; with a base, an error (``on_mismatch: error``) when
        base and masks do not pair."""
        if with_base:
            for name in self.pairing.names:
                if name not in self.read_names and name not in self.unpaired:
                    self.unpaired[name] = "in the mask files, not in base"
            if self.unpaired and self.on_mismatch != "skip":
                shown = "; ".join(f"{name}: {why}" for name, why in sorted(self.unpaired.items())[:3])
                more = f" (and {len(self.unpaired) - 3} more)" if len(self.unpaired) > 3 else ""
                raise CheckpointError(
                    f"{self.metric}: {len(self.unpaired)} tensors of base and the mask files do not pair: "
                    f"{shown}{more}; leave them out with exclude or skip them with on_mismatch: skip"
                )
        skipped = list(self.pairing.skipped)
        skipped += [SkippedTensor(name, why) for name, why in self.unpaired.items()]
        return self.notes(), skipped

    def close(self) -> None:
        for file in self.files:
            file.close()
