"""Exact masking: train only the entries a mask marks, keep every other entry bitwise at its start.

For any engine that owns a torch model and optimizer (torch is imported when a mask is built):

- gradients are masked in a post-accumulate-grad hook with ``masked_fill_`` (NaN-safe: a NaN in
  a frozen entry's gradient becomes 0), so clipping sees only the trainable entries;
- after every optimizer step :meth:`ExactMask.restore` copies the initial bits of the frozen
  entries back into the optimizer-owned tensor (weight decay and momentum move entries whose
  gradient is zero) and counts how many it had to fix;
- a parameter with no trainable entry gets ``requires_grad=False``;
- :meth:`ExactMask.violations` compares the frozen entries with the base bit by bit.

Only the initial values of the frozen entries of partly trainable parameters are kept, so the
extra memory is one value per frozen entry plus one bool per entry of those parameters.
Parameters without a trainable entry are not restored: they get no gradient, so no torch
optimizer touches them, and :meth:`ExactMask.violations` checks them too.

Mask names are checkpoint tensor names; each maps to the parameter of that name, and tied
weights (``lm_head.weight`` sharing ``model.embed_tokens.weight``) map to their one parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from sparsecheck.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    import torch
    from torch.utils.hooks import RemovableHandle

#: A mask file path, or masks by checkpoint tensor name (True = trainable).
MaskSource: TypeAlias = "str | PathLike[str] | Mapping[str, Any]"


def read_masks(source: MaskSource) -> dict[str, np.ndarray]:
    """Masks by tensor name as bool arrays (True = trainable), from a mask file or a mapping."""
    if isinstance(source, Mapping):
        return {name: np.asarray(mask, dtype=bool) for name, mask in source.items()}
    from sparsecheck.metrics._maskfile import MaskFile

    with MaskFile.open(Path(source)) as mask_file:
        return {name: mask_file.read(name) for name in mask_file.names()}


@dataclass
class MaskStats:
    """What a mask froze and what restoring fixed."""

    trainable: int
    frozen: int
    #: Parameters with no trainable entry (``requires_grad=False``).
    frozen_parameters: list[str]
    #: Frozen entries :meth:`ExactMask.restore` found moved and put back, over all calls.
    fixed: int = 0
    restores: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "trainable": self.trainable,
            "frozen": self.frozen,
            "frozen_parameters": list(self.frozen_parameters),
            "fixed": self.fixed,
            "restores": self.restores,
        }


@dataclass
class _Masked:
    """One partly trainable parameter: its frozen entries and their initial bits."""

    name: str
    parameter: torch.Tensor
    frozen: torch.Tensor
    initial_bits: torch.Tensor


_BITS_DTYPES = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``'s storage viewed as same-width integers (comparisons and copies of bits)."""
    import torch

    return tensor.view(getattr(torch, _BITS_DTYPES[tensor.element_size()]))


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The shard a rank owns of a DTensor parameter (FSDP2), or the tensor itself."""
    to_local = getattr(tensor, "to_local", None)
    return tensor if to_local is None else to_local()


def _localise(mask: torch.Tensor, parameter: torch.Tensor) -> torch.Tensor:
    """``mask`` cut like ``parameter``: the local shard's part for a DTensor (FSDP2)."""
    mesh = getattr(parameter, "device_mesh", None)
    if mesh is None:
        return mask.to(parameter.device)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(mask.to(parameter.device), mesh, parameter.placements).to_local()  # type: ignore[attr-defined]


class ExactMask:
    """Confine training of ``model`` to the entries ``masks`` marks trainable, exactly.

    Building it masks gradients (hooks on the parameters) and freezes parameters with no
    trainable entry; call :meth:`restore` after every optimizer step (:meth:`attach` registers
    that on a torch optimizer, ``sparsecheck_trl``'s ``ExactMaskCallback`` on a transformers
    Trainer).  Build it on the model the optimizer updates, before the first step: the values
    then are what :meth:`restore` keeps.
    """

    def __init__(self, model: torch.nn.Module, masks: MaskSource) -> None:
        import torch

        self.masks = read_masks(masks)
        self.parameters = match_masks(model, self.masks)
        self._masked: list[_Masked] = []
        self._handles: list[RemovableHandle] = []
        trainable = frozen = 0
        frozen_parameters = []
        for name, parameter in _unique(self.parameters).items():
            mask = torch.from_numpy(self.masks[name])
            count = int(mask.sum())
            trainable, frozen = trainable + count, frozen + mask.numel() - count
            if count == 0:
                parameter.requires_grad_(False)
                frozen_parameters.append(name)
            elif count < mask.numel():
                self._mask_parameter(name, parameter, _localise(~mask, parameter))
        self.stats = MaskStats(trainable, frozen, frozen_parameters)

    def _mask_parameter(self, name: str, parameter: torch.Tensor, frozen: torch.Tensor) -> None:
        import torch

        with torch.no_grad():
            initial = bits(_local(parameter.detach()))[frozen].clone()
        self._masked.append(_Masked(name, parameter, frozen, initial))

        def mask_gradient(param: torch.Tensor) -> None:
            if param.grad is not None:
                _local(param.grad).masked_fill_(frozen, 0)

        self._handles.append(parameter.register_post_accumulate_grad_hook(mask_gradient))  # type: ignore[no-untyped-call]

    def restore(self) -> int:
        """Put the initial bits back into every frozen entry that moved; return how many moved."""
        import torch

        fixed = 0
        with torch.no_grad():
            for masked in self._masked:
                stored = bits(_local(masked.parameter.detach()))
                moved = int((stored[masked.frozen] != masked.initial_bits).sum())
                if moved:
                    stored.masked_scatter_(masked.frozen, masked.initial_bits)
                fixed += moved
        self.stats.fixed += fixed
        self.stats.restores += 1
        return fixed

    def attach(self, optimizer: torch.optim.Optimizer) -> RemovableHandle:
        """Call :meth:`restore` after every ``optimizer.step()`` (a torch step post-hook)."""

        def restore_after_step(*_: Any) -> None:
            self.restore()

        handle = optimizer.register_step_post_hook(restore_after_step)
        self._handles.append(handle)
        return handle

    def detach(self) -> None:
        """Remove the gradient hooks and the optimizer hook (frozen parameters stay frozen)."""
        while self._handles:
            self._handles.pop().remove()

    def violations(self, base: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Frozen entries whose bits differ from ``base`` (checkpoint name → tensor), by name.

        The base is cast to the parameter's dtype first (exact when the model was loaded in the
        base's dtype or wider, as the TRL backend does).  Every name must be in ``base``.
        """
        import torch

        found = {}
        with torch.no_grad():
            for name, parameter in _unique(self.parameters).items():
                if name not in base:
                    raise UsageError(f"base state has no tensor {name!r} to compare the masked model with")
                value = parameter.detach()
                full = getattr(value, "full_tensor", None)
                value = (value if full is None else full()).cpu()
                frozen = ~torch.from_numpy(self.masks[name])
                expected = base[name].to(value.dtype)
                found[name] = int((bits(value)[frozen] != bits(expected)[frozen]).sum())
        return found


def _unique(parameters: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One mask name per parameter (tied weights appear once, under their first mask name)."""
    seen: dict[int, str] = {}
    for name, parameter in parameters.items():
        seen.setdefault(id(parameter), name)
    return {name: parameters[name] for name in seen.values()}


def match_masks(model: torch.nn.Module, masks: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Map every mask name to its parameter; check shapes, coverage, tied-weight agreement, and
    that some entry is trainable (else there is nothing to train)."""
    by_name = dict(model.named_parameters(remove_duplicate=False))
    unknown = sorted(set(masks) - set(by_name))
    if unknown:
        raise UsageError(
            f"mask tensor {unknown[0]!r} is not a parameter of the model ({len(unknown)} unknown)"
        )
    found = {}
    for name, mask in masks.items():
        parameter = by_name[name]
        shape = tuple(getattr(parameter, "shape", ()))
        if tuple(mask.shape) != shape:
            raise UsageError(f"mask tensor {name!r}: shape {tuple(mask.shape)} but the parameter is {shape}")
        found[name] = parameter
    covered = {id(p) for p in found.values()}
    missing = [name for name, p in model.named_parameters() if id(p) not in covered]
    if missing:
        raise UsageError(f"the mask has no entry for parameter {missing[0]!r} ({len(missing)} missing)")
    first: dict[int, str] = {}
    for name, parameter in found.items():
        other = first.setdefault(id(parameter), name)
        if not np.array_equal(masks[other], masks[name]):
            raise UsageError(f"mask tensors {other!r} and {name!r} are one tied parameter but differ")
    if not any(mask.any() for mask in masks.values()):
        raise UsageError("the mask marks no entry trainable: there is nothing to train")
    return found


@dataclass
class CheckpointViolations:
    """Frozen entries of a saved checkpoint whose values differ from the base's, by tensor."""

    by_tensor: dict[str, int]
    #: Mask names one of the checkpoints lacks (a tied weight saved once), not compared.
    not_compared: list[str]

    @property
    def total(self) -> int:
        return sum(self.by_tensor.values())


def checkpoint_violations(base: Path, tuned: Path, masks: Mapping[str, np.ndarray]) -> CheckpointViolations:
    """Compare the frozen entries (mask False) of two saved checkpoints, value by value.

    Both sides are widened exactly to float64 (integers compare as stored), so a base stored in
    bf16 and a model trained and saved in fp32 compare equal where training kept the value.
    """
    from sparsecheck._dtypes import bits as storage_bits
    from sparsecheck._dtypes import widen
    from sparsecheck.checkpoints._formats import open_local

    readers = open_local(str(base), base), open_local(str(tuned), tuned)
    try:
        found, not_compared = {}, []
        for name, mask in masks.items():
            dtypes = [_dtype(reader, name) for reader in readers]
            if None in dtypes:
                not_compared.append(name)
                continue
            sides = [reader.read(name) for reader in readers]
            if not sides[0].shape == sides[1].shape == mask.shape:
                shapes = ", ".join(str(tuple(a.shape)) for a in (*sides, mask))
                raise CheckpointError(
                    f"{tuned}: tensor {name!r}: base, tuned and mask shapes differ ({shapes})"
                )
            if dtypes[0] != dtypes[1]:
                sides = [
                    widen(array, str(dtype), np.dtype(np.float64))
                    for array, dtype in zip(sides, dtypes, strict=True)
                ]
            base_bits, tuned_bits = (storage_bits(np.ascontiguousarray(side)) for side in sides)
            found[name] = int(np.count_nonzero((base_bits != tuned_bits) & ~mask))
            for reader in readers:
                reader.release(name)
        return CheckpointViolations(found, not_compared)
    finally:
        for reader in readers:
            reader.close()


def _dtype(reader: Any, name: str) -> str | None:
    """The stored dtype of ``name`` (an alias gives its target's), or None when absent."""
    name = reader.aliases().get(name, name)
    stored = reader.tensors().get(name)
    return None if stored is None else str(stored.meta.dtype)


def exact_mask_metadata(base: Path, tuned: Path) -> dict[str, str]:
    """The metadata of a mask file of the exact comparison ``base`` → ``tuned`` (local
    checkpoints), for a backend that writes the mask its run kept."""
    from sparsecheck.checkpoints._formats import open_local
    from sparsecheck.metrics._equality import EqualityPolicy
    from sparsecheck.metrics._maskfile import mask_metadata

    base_reader, tuned_reader = open_local(str(base), base), open_local(str(tuned), tuned)
    try:
        return mask_metadata(EqualityPolicy("exact", 0.0), base_reader, tuned_reader)
    finally:
        base_reader.close()
        tuned_reader.close()
