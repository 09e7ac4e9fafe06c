"""Cold- and warm-cache speed and memory of ``sparsecheck diff`` against ``cat`` and a numpy floor.

Two bf16 pairs, each built once under ``~/.cache/sparsecheck-bench`` and reused:

* ``336m``: bench_compare.py's Llama-shaped pair (hidden 1024, 24 layers, ~15% of entries moved);
* ``7b``: a Llama-2-7B-shaped pair (hidden 4096, intermediate 11008, 32 layers, vocabulary
  32000, no GQA: 6.7B parameters, 13.5 GB per side, one shard per layer), written shard by shard
  so that no more than one shard is ever in memory (needs ~27 GB of disk); entries whose stored
  bits are a multiple of 7 (~14%) move by one unit in the last place.

Cold: before each timed process the page cache is dropped (``sync; echo 3 >
/proc/sys/vm/drop_caches``, as root), then ``cat`` of both sides' files to /dev/null and
``sparsecheck diff BASE TUNED`` (update_sparsity, atol 1e-5, one worker per core) alternate.
Warm (336m only; the 7B pair is larger than RAM): the same ``diff`` against the one-core numpy
floor (map both sides, count ``a != b`` over uint16 views).  It prints medians, the ratios,
GB/s (both sides' bytes over the time), the peak RSS of the largest process (``wait4``), and the
peak total PSS of sparsecheck and its workers from one more (untimed, cold) run; and each round's
ratio (its two runs are back to back, so a machine whose speed drifts moves both).  Run it under
``flock /work/bench.lock`` on a shared machine.  Usage::

    python benchmarks/bench_cold.py [--pair 336m|7b] [--rounds 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "specs" / "examples"))
from bench_compare import DEFAULT_DATA, FLOOR, build, compile_bytecode, measure, peak_pss
from generate import write_safetensors

LLAMA7B = {"hidden": 4096, "intermediate": 11008, "layers": 32, "vocab": 32000}


def llama7b_shapes(layer: int | None) -> dict[str, tuple[int, ...]]:
    """The tensors of one shard: a layer's, or (None) the embeddings, final norm and head."""
    h, f, v = LLAMA7B["hidden"], LLAMA7B["intermediate"], LLAMA7B["vocab"]
    if layer is None:
        return {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,), "lm_head.weight": (v, h)}
    p = f"model.layers.{layer}."
    shapes: dict[str, tuple[int, ...]] = {f"{p}input_layernorm.weight": (h,)}
    for proj in ("q", "k", "v", "o"):
        shapes[f"{p}self_attn.{proj}_proj.weight"] = (h, h)
    shapes[f"{p}post_attention_layernorm.weight"] = (h,)
    for proj, shape in (("gate", (f, h)), ("up", (f, h)), ("down", (h, f))):
        shapes[f"{p}mlp.{proj}_proj.weight"] = shape
    return shapes


def build_7b(root: Path) -> tuple[Path, Path]:
    """Write the 7B-shaped pair once, shard by shard (one shard's two sides in memory at a time)."""
    folder = root / "llama7b-bf16"
    base, tuned = folder / "base", folder / "tuned"
    if (tuned / "model.safetensors.index.json").exists():
        return base, tuned
    base.mkdir(parents=True, exist_ok=True)
    tuned.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    layers: list[int | None] = [None, *range(LLAMA7B["layers"])]
    weight_map: dict[str, str] = {}
    total = 0
    for index, layer in enumerate(layers):
        shard = f"model-{index + 1:05d}-of-{len(layers):05d}.safetensors"
        sides: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
        for name, shape in llama7b_shapes(layer).items():
            if name.endswith("norm.weight"):
                a = np.full(shape, 0x3F80, dtype=np.uint16)  # 1.0, unchanged
                b = a.copy()
            else:  # magnitudes 2^-8 .. 2^-4, either sign
                a = rng.integers(0x3B80, 0x3D80, size=shape, dtype=np.uint16)
                a |= (rng.integers(0, 2, size=shape, dtype=np.uint16) << 15).astype(np.uint16)
                b = a ^ (a % 7 == 0).astype(np.uint16)
            sides[0][name], sides[1][name] = a, b
            weight_map[name] = shard
            total += a.nbytes
        for side, tensors in zip((base, tuned), sides, strict=True):
            write_safetensors(side / shard, tensors)
        del sides
    for side in (base, tuned):
        index_json = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (side / "model.safetensors.index.json").write_text(json.dumps(index_json))
    return base, tuned


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def files(side: Path) -> list[str]:
    return sorted(str(f) for f in side.glob("*.safetensors"))


def bench(base: Path, tuned: Path, rounds: int, warm: bool) -> None:
    nbytes = sum(Path(f).stat().st_size for f in files(base) + files(tuned))
    with tempfile.TemporaryDirectory() as tmp:
        diff = [sys.executable, "-m", "sparsecheck", "diff", str(base), str(tuned), "--no-cache", "-q"]
        diff += ["--json", str(Path(tmp) / "r.json")]
        cat = ["cat", *files(base), *files(tuned)]
        cold: dict[str, list[tuple[float, float]]] = {"cat": [], "sparsecheck": []}
        for round_index in range(rounds):
            order = ["cat", "sparsecheck"] if round_index % 2 == 0 else ["sparsecheck", "cat"]
            for name in order:
                drop_caches()
                command = cat if name == "cat" else diff
                if name == "cat":
                    command = ["sh", "-c", 'exec cat "$@" > /dev/null', "cat", *cat[1:]]
                seconds, rss, _ = measure(command)
                cold[name].append((seconds, rss))
        sparsity = json.loads((Path(tmp) / "r.json").read_text())["checks"][0]["value"]
        drop_caches()
        pss = peak_pss(diff)
        print(f"  {nbytes / 1e9:.1f} GB in both sides; sparsity {sparsity:.4f}; median of {rounds} rounds")
        print("  cold page cache (dropped before each process):")
        for name, rows in cold.items():
            seconds = statistics.median(s for s, _ in rows)
            rss = max(r for _, r in rows)
            print(
                f"    {name:<12} {seconds:7.2f} s  {nbytes / seconds / 1e9:5.2f} GB/s"
                f"  peak RSS {rss:6.0f} MB  (runs: {', '.join(f'{s:.2f}' for s, _ in rows)} s)"
            )
        ratio = statistics.median(s for s, _ in cold["sparsecheck"]) / statistics.median(
            s for s, _ in cold["cat"]
        )
        print(f"    sparsecheck / cat      {ratio:.2f}x")
        print(paired([s for s, _ in cold["sparsecheck"]], [s for s, _ in cold["cat"]]))
        print(f"    sparsecheck and its workers: peak total PSS {pss:.0f} MB (one more cold run)")
        if not warm:
            return
        floor = [sys.executable, "-c", FLOOR, str(base), str(tuned)]
        for command in (floor, diff):  # warm the page cache
            measure(command)
        times: dict[str, list[float]] = {"floor": [], "sparsecheck": []}
        for round_index in range(rounds):
            order = ["floor", "sparsecheck"] if round_index % 2 == 0 else ["sparsecheck", "floor"]
            for name in order:
                times[name].append(measure(floor if name == "floor" else diff)[0])
        print("  warm page cache:")
        for name, values in times.items():
            runs = ", ".join(f"{s:.2f}" for s in values)
            print(f"    {name:<12} {statistics.median(values):7.2f} s  (runs: {runs} s)")
        warm_ratio = statistics.median(times["sparsecheck"]) / statistics.median(times["floor"])
        print(f"    sparsecheck / floor    {warm_ratio:.2f}x")
        print(paired(times["sparsecheck"], times["floor"]))


def paired(ours: list[float], baseline: list[float]) -> str:
    """Each round's ratio (the two runs of a round are back to back): a machine whose speed drifts
    moves both runs of a round, and a baseline that jumps between two speeds shows as a spread."""
    ratios = sorted(a / b for a, b in zip(ours, baseline, strict=True))
    return (
        f"    per round: median {statistics.median(ratios):.2f}x, range {ratios[0]:.2f}-{ratios[-1]:.2f}x"
        f" ({', '.join(f'{r:.2f}' for r in ratios)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pair", choices=("336m", "7b"), default="336m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--build-only", action="store_true", help="build the pair and stop")
    args = parser.parse_args()
    if args.pair == "7b":
        base, tuned = build_7b(args.data)
    else:  # built in a child: its peak RSS would otherwise be the timed children's starting point
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).parent / "bench_compare.py"),
                "--data",
                str(args.data),
                "--build-only",
                "24",
            ],
            check=True,
        )
        base, tuned = build(args.data, 24)
    if args.build_only:
        return
    compile_bytecode()
    from sparsecheck.metrics import _fused

    began = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cores = len(os.sched_getaffinity(0))
    print(f"{args.pair} bf16 pair, {cores} CPU cores, compare engine: {_fused.engine()}, {began}")
    bench(base, tuned, args.rounds, warm=args.pair == "336m")


if __name__ == "__main__":
    main()
