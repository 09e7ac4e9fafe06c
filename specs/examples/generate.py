"""Write the checkpoints the example specs in this folder read.

A tiny Llama-shaped model in bfloat16 with planted updates:

- ``base`` (pretrained) and ``sft`` (most entries changed from base);
- two RL runs from ``sft`` that change 18% of entries and leave the norms untouched:
  ``rl-a``, and ``rl-b`` whose changes share half of ``rl-a``'s entries (overlap above chance);
- ``rl-a-run/checkpoint-{10,20,30}``: ``rl-a``'s training run, whose early checkpoints also
  move entries that are back at their ``sft`` value by the end (transient updates);
- ``rl-a-sub``: a "subnetwork-only" rerun of ``rl-a`` that differs from it in 2% of entries.

Usage::

    python specs/examples/generate.py [OUTPUT_FOLDER]   # default: specs/examples/checkpoints
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]


def _move(state: State, masks: dict[str, torch.Tensor], magnitude: float = 0.01) -> State:
    """``state`` with the entries under ``masks`` moved (by more than their bf16 precision)."""
    moved = {}
    for name, tensor in state.items():
        step = (tensor.float().abs() * magnitude * 4 + magnitude).to(tensor.dtype).float()
        shifted = (tensor.float() + step).to(tensor.dtype)
        moved[name] = torch.where(masks[name], shifted, tensor)
    return moved


def _overlapping(masks: dict[str, torch.Tensor], share: float, seed: int) -> dict[str, torch.Tensor]:
    """Masks of the same size as ``masks`` keeping ``share`` of their entries, the rest elsewhere."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, mask in masks.items():
        flat = mask.reshape(-1)
        kept, free = flat.nonzero().squeeze(1), (~flat).nonzero().squeeze(1)
        keep = kept[torch.randperm(kept.numel(), generator=g)[: round(share * kept.numel())]]
        add = free[torch.randperm(free.numel(), generator=g)[: kept.numel() - keep.numel()]]
        new = torch.zeros_like(flat)
        new[keep], new[add] = True, True
        out[name] = new.reshape(mask.shape)
    return out


def main(out: Path) -> None:
    base = tiny_llama_state_dict(layers=4, hidden=64, intermediate=128, vocab=256, dtype=torch.bfloat16)
    sft, _ = plant_changes(base, 0.92, seed=1)
    rl_fraction = {name: 0.0 if "norm" in name else 0.18 for name in sft}
    rl_a, mask_a = plant_changes(sft, rl_fraction, seed=2, magnitude=0.01)
    rl_b = _move(sft, _overlapping(mask_a, 0.5, seed=3))
    early = _move(rl_a, _overlapping(mask_a, 0.0, seed=4))  # extra entries that come back later
    halfway = _move(rl_a, _overlapping(mask_a, 0.0, seed=5))
    g = torch.Generator().manual_seed(7)
    drift = {n: torch.rand(m.shape, generator=g) < 0.02 for n, m in mask_a.items()}
    sub = _move(rl_a, _overlapping(drift, 1.0, seed=6))
    layouts = {"base": (base, "dir"), "sft": (sft, "sharded"), "rl-a": (rl_a, "dir"), "rl-b": (rl_b, "dir")}
    layouts |= {"rl-a-sub": (sub, "dir"), "rl-a-run/checkpoint-10": (early, "dir")}
    layouts |= {"rl-a-run/checkpoint-20": (halfway, "dir"), "rl-a-run/checkpoint-30": (rl_a, "dir")}
    for name, (tensors, layout) in layouts.items():
        write_checkpoint(out / name, tensors, layout=layout)  # type: ignore[arg-type]
    print(f"wrote {', '.join(layouts)} under {os.path.relpath(out)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "checkpoints")
