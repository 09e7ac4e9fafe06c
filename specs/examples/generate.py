"""Write the checkpoints the example specs in this folder read.

A tiny Llama-shaped model in bfloat16 with planted updates: ``base`` (pretrained), ``sft``
(most entries changed from base), and two RL runs ``rl-a`` / ``rl-b`` from ``sft`` that change
a small share of entries and leave the norms untouched.  Usage::

    python specs/examples/generate.py [OUTPUT_FOLDER]   # default: specs/examples/checkpoints
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint


def main(out: Path) -> None:
    base = tiny_llama_state_dict(layers=4, hidden=64, intermediate=128, vocab=256, dtype=torch.bfloat16)
    sft, _ = plant_changes(base, 0.92, seed=1)
    rl_fraction = {name: 0.0 if "norm" in name else 0.18 for name in sft}
    rl_a, _ = plant_changes(sft, rl_fraction, seed=2, magnitude=0.01)
    rl_b, _ = plant_changes(sft, rl_fraction, seed=3, magnitude=0.01)
    for name, tensors, layout in (
        ("base", base, "dir"),
        ("sft", sft, "sharded"),
        ("rl-a", rl_a, "dir"),
        ("rl-b", rl_b, "dir"),
    ):
        write_checkpoint(out / name, tensors, layout=layout)  # type: ignore[arg-type]
    print(f"wrote base, sft, rl-a, rl-b under {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "checkpoints")
