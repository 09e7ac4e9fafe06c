"""Time ``update_rank``'s decomposition of every 2-D update of a Llama-2-7B-shaped pair.

Random bf16 weights are made on the compute device, one matrix pair at a time (base ~ N(0, 0.02),
tuned = base with ~15% of entries moved), and go through the metric's own code path: ΔW in float32
(``update_matrix``), then ``SvdBatcher`` (same-shape batches with torch on CUDA, one by one with
numpy's LAPACK on the CPU, as the metric does) and the spectrum summaries. On CUDA the whole model
runs (target: at most 2 minutes on one H100); on the CPU, where one 4096×4096 matrix takes seconds,
``--matrices`` of them run and the time per matrix and an extrapolation to the whole model are
printed.  Usage::

    python benchmarks/bench_rank.py [--device auto|cpu|cuda] [--matrices 3] [--layers 32]
"""

from __future__ import annotations

import argparse
import time

import torch

from sparsecheck.metrics._svd import BATCH_BYTES, RankTolerance, SvdBatcher, numpy_svdvals
from sparsecheck.metrics._svd_torch import torch_svdvals, update_matrix
from sparsecheck.metrics.update_rank import resolve_device

HIDDEN, INTERMEDIATE, VOCAB = 4096, 11008, 32000


def shapes(layers: int) -> list[tuple[str, tuple[int, int]]]:
    """Every 2-D tensor of Llama-2-7B (``layers`` decoder layers), in storage order."""
    names = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        for proj in ("q", "k", "v", "o"):
            names.append((f"model.layers.{i}.self_attn.{proj}_proj.weight", (HIDDEN, HIDDEN)))
        names.append((f"model.layers.{i}.mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)))
        names.append((f"model.layers.{i}.mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)))
        names.append((f"model.layers.{i}.mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)))
    names.append(("lm_head.weight", (VOCAB, HIDDEN)))
    return names


def pair(
    shape: tuple[int, int], device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    base = (torch.randn(shape, device=device, generator=generator) * 0.02).to(torch.bfloat16)
    moved = torch.rand(shape, device=device, generator=generator) < 0.15
    step = torch.randn(shape, device=device, generator=generator) * 1e-3
    return base, torch.where(moved, (base.float() + step).to(torch.bfloat16), base)


def svd_cost(shape: tuple[int, int]) -> float:
    """Relative cost of the singular values of an m×n matrix (m·n·min(m, n))."""
    m, n = shape
    return m * n * min(m, n)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--matrices", type=int, default=3, help="4096x4096 matrices timed on the CPU")
    args = parser.parse_args()
    device = torch.device(resolve_device("bench_rank", args.device))
    model = shapes(args.layers)
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cpu":
        model = [(name, shape) for name, shape in model if shape == (HIDDEN, HIDDEN)][: args.matrices]
    cuda = device.type == "cuda"
    # The metric's CPU path: numpy's LAPACK on the update (made with torch here, as on CUDA).
    batcher = SvdBatcher(
        RankTolerance("float32"), BATCH_BYTES if cuda else 0, torch_svdvals if cuda else numpy_svdvals
    )
    made = 0.0
    start = time.perf_counter()
    for name, shape in model:
        began = time.perf_counter()
        base, tuned = pair(shape, device, generator)
        made += time.perf_counter() - began
        delta = update_matrix(base, tuned, device, "float32")
        batcher.add(name, delta if cuda else delta.numpy())
        del base, tuned
    batcher.flush()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start - made
    ranks = [s.rank_pct for s in batcher.done.values()]
    label = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"{label}: {len(ranks)} matrices decomposed in {seconds:.1f} s (making the weights: {made:.1f} s)")
    print(f"  rank % of each update: min {min(ranks):.2f}, mean {sum(ranks) / len(ranks):.2f}")
    if device.type == "cpu":
        per = seconds / len(ranks)
        whole = sum(svd_cost(shape) for _, shape in shapes(args.layers)) / svd_cost((HIDDEN, HIDDEN))
        print(f"  {per:.2f} s per float32 4096x4096 update; all of the 7B shape: ~{per * whole / 60:.0f} min")
    else:
        verdict = "met" if seconds <= 120 else "not met"
        print(f"  target: all 2-D updates of the 7B shape in <= 120 s on one H100 ({verdict})")


if __name__ == "__main__":
    main()
