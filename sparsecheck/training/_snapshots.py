"""Recording a run for transient analysis: the ever-changed mask, snapshots and the log.

Engine-neutral: an engine calls :meth:`SnapshotRecorder.record` after each optimizer step (after
:meth:`ExactMask.restore`), :meth:`SnapshotRecorder.log` with its logged values, and
:meth:`SnapshotRecorder.finish` at the end.

- The ever-changed mask is kept per parameter as packed bits (1 bit per entry, little-endian
  bit order, the mask file's layout): at each recorded step, entries whose bits differ from the
  base (the model when the recorder was built) are OR-ed in.  One copy of the base's bits is
  kept for that.  "Changed" is exact in the dtype the model trains in.
- With ``SnapshotPolicy.full`` the model is saved as ``<snapshots>/checkpoint-<step>/`` by the
  engine's ``save`` callable, the layout :func:`sparsecheck.checkpoints._runs.run_checkpoints`
  reads; the final step is always among them, so θ_T is the final model.
- The log has one line per logged step (an engine's records of one step merge); each also gets
  ``changed`` and ``ever_changed``: entry counts at that step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparsecheck._atomic import write_text_atomic
from sparsecheck.training._api import SnapshotPolicy
from sparsecheck.training._masking import bits

if TYPE_CHECKING:
    import torch

CHANGED_MASK_FILE = "ever_changed.mask.safetensors"
LOG_FILE = "train_log.jsonl"


@dataclass
class RecordedRun:
    """What :meth:`SnapshotRecorder.finish` wrote."""

    changed_mask: Path
    log_file: Path
    snapshots: list[Path]
    log: list[dict[str, Any]]


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool tensor as packed uint8 bits, little-endian bit order (like ``np.packbits(..., "little")``)."""
    import torch

    flat = mask.reshape(-1).to(torch.uint8)
    padding = (-flat.numel()) % 8
    if padding:
        flat = torch.nn.functional.pad(flat, (0, padding))
    shifts = torch.arange(8, dtype=torch.uint8, device=flat.device)
    return (flat.view(-1, 8) << shifts).sum(dim=1, dtype=torch.uint8)


def count_bits(packed: torch.Tensor) -> int:
    """How many bits are set in a packed uint8 tensor (on its device)."""
    import torch

    table = torch.tensor([bin(byte).count("1") for byte in range(256)], device=packed.device)
    return int(table[packed.long()].sum())


def unpack_bits(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`pack_bits`: a bool array of ``shape``."""
    count = int(np.prod(shape, dtype=np.int64))
    return np.unpackbits(packed, bitorder="little")[:count].reshape(shape).astype(bool)


class SnapshotRecorder:
    """Records what a run of ``model`` changes against the model as it is now."""

    def __init__(
        self,
        model: torch.nn.Module,
        folder: Path,
        policy: SnapshotPolicy,
        save: Callable[[Path], None],
    ) -> None:
        import torch

        if policy.every < 1:
            raise ValueError(f"snapshot interval must be at least 1, got {policy.every}")
        self.folder, self.policy, self._save = folder, policy, save
        self._parameters = dict(model.named_parameters())
        with torch.no_grad():
            self._base = {name: bits(p.detach()).clone() for name, p in self._parameters.items()}
        self._ever = {
            name: pack_bits(torch.zeros_like(b, dtype=torch.bool)) for name, b in self._base.items()
        }
        self._counts: dict[int, dict[str, int]] = {}
        self._log: list[dict[str, Any]] = []
        self.snapshots: list[Path] = []
        self._last_step = 0

    def record(self, step: int, *, final: bool = False) -> None:
        """Update the ever-changed mask at ``step`` (every ``policy.every`` steps, and when
        ``final``) and save a snapshot when the policy asks for them."""
        import torch

        if step == self._last_step or not (final or step % self.policy.every == 0):
            return
        self._last_step = step
        changed = 0
        with torch.no_grad():
            for name, parameter in self._parameters.items():
                mask = bits(parameter.detach()) != self._base[name]
                changed += int(mask.sum())
                self._ever[name] |= pack_bits(mask)
        ever = sum(count_bits(packed) for packed in self._ever.values())
        self._counts[step] = {"changed": changed, "ever_changed": ever}
        if self.policy.full:
            snapshot = self.folder / f"checkpoint-{step}"
            self._save(snapshot)
            self.snapshots.append(snapshot)

    def log(self, step: int, values: Mapping[str, Any]) -> None:
        """Keep the numbers of a log record of ``step``; records of one step merge into one line."""
        numbers = {k: v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if self._log and self._log[-1]["step"] == step:
            self._log[-1].update(numbers)
        else:
            self._log.append({"step": step, **numbers})

    def changed_masks(self) -> dict[str, np.ndarray]:
        """The ever-changed masks so far, by parameter name (True = changed at a recorded step)."""
        return {
            name: unpack_bits(packed.cpu().numpy(), tuple(self._base[name].shape))
            for name, packed in self._ever.items()
        }

    def finish(self, step: int, metadata: Mapping[str, str]) -> RecordedRun:
        """Record ``step`` as final; write the ever-changed mask file (``metadata`` as for
        :class:`~sparsecheck.metrics._maskfile.MaskWriter`, plus ``kind`` and ``recorded_steps``)
        and the JSON-lines log."""
        from sparsecheck.metrics._maskfile import MaskWriter

        self.record(step, final=True)
        for record in self._log:
            record.update(self._counts.get(record["step"], {}))
        self.folder.mkdir(parents=True, exist_ok=True)
        mask_path = self.folder / CHANGED_MASK_FILE
        steps = ",".join(str(s) for s in self._counts)
        with MaskWriter(mask_path, {**metadata, "kind": "ever_changed", "recorded_steps": steps}) as writer:
            for name, mask in self.changed_masks().items():
                writer.add(name, mask)
        log_path = self.folder / LOG_FILE
        write_text_atomic(log_path, "".join(json.dumps(r) + "\n" for r in self._log))
        return RecordedRun(mask_path, log_path, list(self.snapshots), list(self._log))
