"""Write the checkpoints the example specs in this folder read (numpy only: no torch needed).

A tiny Llama-shaped model in bfloat16 with planted updates:

- ``base`` (pretrained) and ``sft`` (most entries changed from base);
- two RL runs from ``sft`` that change 18% of entries and leave the norms untouched:
  ``rl-a``, and ``rl-b`` whose changes share half of ``rl-a``'s entries (overlap above chance);
- ``rl-a-run/checkpoint-{10,20,30}``: ``rl-a``'s training run, whose early checkpoints also
  move entries that are back at their ``sft`` value by the end (transient updates);
- ``rl-a-sub``: a "subnetwork-only" rerun of ``rl-a`` that differs from it in 2% of entries.

Usage, from a source checkout or from the installed package::

    python specs/examples/generate.py [FOLDER]               # default: this folder
    python -m sparsecheck.specs.examples.generate FOLDER      # then: sparsecheck run FOLDER

The checkpoints go to ``FOLDER/checkpoints``; the example specs are copied into ``FOLDER``
when it is not this folder.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

from sparsecheck._dtypes import round_to_bfloat16_bits, widen

HERE = Path(__file__).resolve().parent
#: Tensor name → bfloat16 bits (uint16).
State = dict[str, np.ndarray]
Masks = dict[str, np.ndarray]


def tiny_llama(
    rng: np.random.Generator, layers: int = 4, hidden: int = 64, inter: int = 128, vocab: int = 256
) -> State:
    """Llama's tensor names and shapes: norms near 1, other weights ~N(0, 0.02), in bfloat16."""
    shapes = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        prefix = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{prefix}self_attn.{proj}.weight"] = (hidden, hidden)
        shapes |= {
            f"{prefix}mlp.gate_proj.weight": (inter, hidden),
            f"{prefix}mlp.up_proj.weight": (inter, hidden),
        }
        shapes[f"{prefix}mlp.down_proj.weight"] = (hidden, inter)
        shapes |= {
            f"{prefix}input_layernorm.weight": (hidden,),
            f"{prefix}post_attention_layernorm.weight": (hidden,),
        }
    shapes |= {"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
    return {
        name: round_to_bfloat16_bits((1.0 if "norm" in name else 0.0) + rng.standard_normal(shape) * 0.02)
        for name, shape in shapes.items()
    }


def values(bits: np.ndarray) -> np.ndarray:
    return widen(bits, "bfloat16", np.dtype(np.float32))


def moved(state: State, masks: Masks, magnitude: float) -> State:
    """``state`` with the entries under ``masks`` moved by about ``magnitude`` · (|w| + 1), each by
    at least one bfloat16 step (so every masked entry changes)."""
    out = {}
    for name, bits in state.items():
        old = values(bits)
        step = magnitude * (np.abs(old) + 1) * np.where(old < 0, -1.0, 1.0)
        new = round_to_bfloat16_bits(old + step)
        same = new == bits
        while same.any():  # too small a step for bfloat16 there: double it
            step = np.where(same, step * 2, step)
            new = round_to_bfloat16_bits(old + step)
            same = new == bits
        out[name] = np.where(masks[name], new, bits)
    return out


def random_masks(state: State, fraction: dict[str, float], rng: np.random.Generator) -> Masks:
    """An exact ``fraction[name]`` of each tensor's entries, chosen at random."""
    masks = {}
    for name, bits in state.items():
        flat = np.zeros(bits.size, dtype=bool)
        flat[rng.permutation(bits.size)[: round(fraction[name] * bits.size)]] = True
        masks[name] = flat.reshape(bits.shape)
    return masks


def overlapping(masks: Masks, share: float, rng: np.random.Generator) -> Masks:
    """Masks of the same size as ``masks`` keeping ``share`` of their entries, the rest elsewhere."""
    out = {}
    for name, mask in masks.items():
        flat = mask.reshape(-1)
        kept, free = np.flatnonzero(flat), np.flatnonzero(~flat)
        keep = rng.permutation(kept)[: round(share * kept.size)]
        add = rng.permutation(free)[: kept.size - keep.size]
        new = np.zeros_like(flat)
        new[keep], new[add] = True, True
        out[name] = new.reshape(mask.shape)
    return out


def write_safetensors(path: Path, state: State) -> None:
    """One safetensors file of bfloat16 tensors (``state``'s uint16 bits), in the order given,
    written atomically (a ``.tmp`` file renamed over ``path``)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, bits in state.items():
        header[name] = {
            "dtype": "BF16",
            "shape": list(bits.shape),
            "data_offsets": [offset, offset + bits.nbytes],
        }
        offset += bits.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        for bits in state.values():
            np.ascontiguousarray(bits, dtype="<u2").tofile(handle)
    os.replace(partial, path)


def write_checkpoint(folder: Path, state: State, shards: int = 1) -> None:
    """``folder/model.safetensors``, or ``shards`` files and their index, as ``save_pretrained`` does."""
    folder.mkdir(parents=True, exist_ok=True)
    if shards == 1:
        write_safetensors(folder / "model.safetensors", state)
        return
    names = list(state)
    weight_map = {}
    for number, part in enumerate(np.array_split(np.arange(len(names)), shards), start=1):
        file = f"model-{number:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / file, {names[i]: state[names[i]] for i in part})
        weight_map |= {names[i]: file for i in part}
    total = sum(bits.nbytes for bits in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def main(out: Path) -> None:
    """Write the example checkpoints under ``out`` (seeded: the same bytes on every run)."""
    rng = np.random.default_rng(0)
    base = tiny_llama(rng)
    sft = moved(base, random_masks(base, dict.fromkeys(base, 0.92), rng), 0.1)
    mask_a = random_masks(sft, {name: 0.0 if "norm" in name else 0.18 for name in sft}, rng)
    rl_a = moved(sft, mask_a, 0.01)
    rl_b = moved(sft, overlapping(mask_a, 0.5, rng), 0.01)
    early = moved(rl_a, overlapping(mask_a, 0.0, rng), 0.01)  # extra entries that come back later
    halfway = moved(rl_a, overlapping(mask_a, 0.0, rng), 0.01)
    sub = moved(rl_a, {name: rng.random(mask.shape) < 0.02 for name, mask in mask_a.items()}, 0.01)
    checkpoints = {"base": base, "rl-a": rl_a, "rl-b": rl_b, "rl-a-sub": sub}
    checkpoints |= {"rl-a-run/checkpoint-10": early, "rl-a-run/checkpoint-20": halfway}
    checkpoints |= {"rl-a-run/checkpoint-30": rl_a}
    write_checkpoint(out / "sft", sft, shards=2)
    for name, state in checkpoints.items():
        write_checkpoint(out / name, state)
    print(f"wrote sft, {', '.join(checkpoints)} under {os.path.relpath(out)}")


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    main(folder / "checkpoints")
    if folder.resolve() != HERE:
        for spec in sorted(HERE.glob("*.sparsecheck.yaml")):
            shutil.copyfile(spec, folder / spec.name)
