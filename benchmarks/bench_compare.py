"""Whole-process speed and memory of sparsecheck against the naive way and a numpy floor.

Builds (once, cached outside the repository) a Llama-shaped bf16 pair -- hidden 1024,
intermediate 2816, vocabulary 32000, 24 layers (336M parameters), 4 shards, ~15% of entries
changed -- and times three whole processes, alternating, over several rounds:

1. sparsecheck: ``diff`` with update_sparsity (atol 1e-5) + layernorm_sparsity, the per-tensor
   breakdown and a mask export, with its default workers (one process per core) and with
   ``--workers 1``; and the same plus mask_overlap and weight_similarity checks over the same
   pair in one spec (to show that more metrics share the one read);
2. naive: ``safetensors.torch.load_file`` both sides, then per tensor
   ``(a.float() - b.float()).abs() > tol``;
3. floor: memory-map both files and count ``a != b`` over uint16 views with numpy.

It prints the medians, the ratios sparsecheck/floor and naive/sparsecheck, each peak RSS (of the
largest process) and, from one more untimed run, the peak total PSS of the process and its
workers; then the same at double the model size (48 layers).  Usage::

    python benchmarks/bench_compare.py [--rounds 5] [--sizes 1,2] [--data DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, INTERMEDIATE, VOCAB, LAYERS, SHARDS = 1024, 2816, 32000, 24, 4
CHANGED = 0.15
DEFAULT_DATA = Path(os.environ.get("SPARSECHECK_BENCH_DIR", Path.home() / ".cache" / "sparsecheck-bench"))

NAIVE = """
import sys, json
from pathlib import Path
from safetensors.torch import load_file
changed = total = 0
shards = [sorted(Path(side).glob("*.safetensors")) for side in sys.argv[1:3]]
for side_a, side_b in zip(*shards):
    a, b = load_file(side_a), load_file(side_b)
    for name in a:
        changed += int(((a[name].float() - b[name].float()).abs() > 1e-5).sum())
        total += a[name].numel()
print(json.dumps({"sparsity": 1 - changed / total}))
"""

FLOOR = """
import sys, json
from pathlib import Path
import numpy as np
changed = total = 0
shards = [sorted(Path(side).glob("*.safetensors")) for side in sys.argv[1:3]]
for side_a, side_b in zip(*shards):
    start_a = 8 + int.from_bytes(open(side_a, "rb").read(8), "little")
    start_b = 8 + int.from_bytes(open(side_b, "rb").read(8), "little")
    a = np.memmap(side_a, np.uint16, "r", offset=start_a)
    b = np.memmap(side_b, np.uint16, "r", offset=start_b)
    changed += int(np.count_nonzero(a != b))
    total += a.size
print(json.dumps({"sparsity": 1 - changed / total}))
"""


FIVE_CHECKS = """version: 1
checkpoints: {{base: "{base}", tuned: "{tuned}"}}
checks:
  - {{id: sparsity, metric: update_sparsity, args: {{base: base, tuned: tuned}}, per: tensor,
     expect: {{ge: 0}}}}
  - {{id: norms, metric: layernorm_sparsity, args: {{base: base, tuned: tuned}}}}
  - {{id: mask, metric: update_mask, args: {{base: base, tuned: tuned, output: "{out}/mask5.safetensors"}}}}
  - {{id: overlap, metric: mask_overlap, args: {{base: base, run_a: tuned, run_b: tuned}}}}
  - {{id: similarity, metric: weight_similarity, args: {{sub: tuned, full: tuned, base: base}}}}
"""


def build(root: Path, layers: int) -> tuple[Path, Path]:
    """Write the pair once; later runs reuse it."""
    folder = root / f"llama-h{HIDDEN}-l{layers}-bf16"
    base, tuned = folder / "base", folder / "tuned"
    if (tuned / "model.safetensors.index.json").exists():
        return base, tuned
    import torch

    from sparsecheck.testing import write_checkpoint

    g = torch.Generator().manual_seed(0)
    shapes = {
        "model.embed_tokens.weight": (VOCAB, HIDDEN),
        "model.norm.weight": (HIDDEN,),
        "lm_head.weight": (VOCAB, HIDDEN),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        for proj, shape in (
            ("q", (HIDDEN, HIDDEN)),
            ("k", (HIDDEN, HIDDEN)),
            ("v", (HIDDEN, HIDDEN)),
            ("o", (HIDDEN, HIDDEN)),
        ):
            shapes[f"{p}self_attn.{proj}_proj.weight"] = shape
        for proj, shape in (
            ("gate", (INTERMEDIATE, HIDDEN)),
            ("up", (INTERMEDIATE, HIDDEN)),
            ("down", (HIDDEN, INTERMEDIATE)),
        ):
            shapes[f"{p}mlp.{proj}_proj.weight"] = shape
        shapes[f"{p}input_layernorm.weight"] = (HIDDEN,)
        shapes[f"{p}post_attention_layernorm.weight"] = (HIDDEN,)
    base_sd, tuned_sd = {}, {}
    for name, shape in shapes.items():
        if name.endswith("norm.weight"):
            w = torch.ones(shape).to(torch.bfloat16)
            base_sd[name], tuned_sd[name] = w, w.clone()
            continue
        w = (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
        moved = torch.rand(shape, generator=g) < CHANGED
        step = (w.float() * 0.05 + torch.sign(torch.randn(shape, generator=g)) * 1e-3).to(torch.bfloat16)
        base_sd[name], tuned_sd[name] = (
            w,
            torch.where(moved, (w.float() + step.float()).to(torch.bfloat16), w),
        )
    write_checkpoint(base, base_sd, layout="sharded", shards=SHARDS)
    write_checkpoint(tuned, tuned_sd, layout="sharded", shards=SHARDS)
    return base, tuned


def measure(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:4]} failed:\n{err}")
    return seconds, usage.ru_maxrss / 1024, out


def peak_pss(command: list[str]) -> float:
    """The largest total PSS in MB of a process and its children (sparsecheck's workers), sampled
    from /proc every 10 ms in an untimed run; PSS splits shared pages among the processes."""

    def tree(pid: int) -> list[int]:
        pids = [pid]
        for task in Path(f"/proc/{pid}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            pids += [p for child in children for p in tree(int(child))]
        return pids

    def pss(pid: int) -> float:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
        return 0.0

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        with contextlib.suppress(OSError):  # a process ended while being read
            peak = max(peak, sum(pss(pid) for pid in tree(proc.pid)))
        time.sleep(0.01)
    return peak


def commands(base: Path, tuned: Path, work: Path) -> dict[str, list[str]]:
    sparsecheck = [sys.executable, "-m", "sparsecheck"]
    diff = [*sparsecheck, "diff", str(base), str(tuned), "--per", "tensor", "--no-cache", "-q"]
    diff += ["--metrics", "update_sparsity,layernorm_sparsity"]
    return {
        "sparsecheck": [*diff, "--mask-out", str(work / "mask.safetensors"), "--json", str(work / "r.json")],
        "sparsecheck w1": [*diff, "--mask-out", str(work / "mask1.safetensors"), "--workers", "1"],
        "sparsecheck+5": [*sparsecheck, "run", str(work / "five.sparsecheck.yaml"), "--no-cache", "-q"],
        "naive": [sys.executable, "-c", NAIVE, str(base), str(tuned)],
        "floor": [sys.executable, "-c", FLOOR, str(base), str(tuned)],
    }


def compile_bytecode() -> None:
    """Compile sparsecheck's modules, as installing a wheel does (an editable install under
    PYTHONDONTWRITEBYTECODE would otherwise compile them in every timed process)."""
    import compileall

    import sparsecheck

    compileall.compile_dir(Path(sparsecheck.__file__).parent, quiet=1)


def bench(base: Path, tuned: Path, rounds: int) -> dict[str, dict[str, float]]:
    for file in [*base.glob("*.safetensors"), *tuned.glob("*.safetensors")]:
        with open(file, "rb") as handle:  # warm the page cache
            while handle.read(1 << 24):
                pass
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "five.sparsecheck.yaml").write_text(FIVE_CHECKS.format(base=base, tuned=tuned, out=tmp))
        cmds = commands(base, tuned, Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in cmds}
        rss: dict[str, list[float]] = {name: [] for name in cmds}
        for round_index in range(rounds):
            order = list(cmds) if round_index % 2 == 0 else list(reversed(cmds))
            for name in order:
                seconds, peak, _ = measure(cmds[name])
                times[name].append(seconds)
                rss[name].append(peak)
        report = json.loads((Path(tmp) / "r.json").read_text())
        on_linux = Path("/proc/self/smaps_rollup").exists()
        pss = {name: peak_pss(cmds[name]) for name in cmds} if on_linux else {}
    value = report["checks"][0]["value"]
    return {
        name: {
            "median_s": statistics.median(times[name]),
            "peak_rss_mb": max(rss[name]),
            "peak_pss_mb": pss.get(name, float("nan")),
            "sparsity": value,
        }
        for name in cmds
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1,2", help="model sizes as multiples of 24 layers")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--build-only", type=int, metavar="LAYERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.data, args.build_only)
        return
    compile_bytecode()
    print(f"{len(os.sched_getaffinity(0))} CPU cores; sparsecheck: one worker process per core (--workers)")
    for size in (int(s) for s in args.sizes.split(",")):
        # Built in a child process: a child's peak RSS on Linux starts from its parent's at fork.
        command = [sys.executable, __file__, "--data", str(args.data), "--build-only", str(LAYERS * size)]
        subprocess.run(command, check=True)
        base, tuned = build(args.data, LAYERS * size)
        index = json.loads((base / "model.safetensors.index.json").read_text())
        params = index["metadata"]["total_size"] // 2
        result = bench(base, tuned, args.rounds)
        sc, naive, floor = result["sparsecheck"], result["naive"], result["floor"]
        layers = LAYERS * size
        print(f"\n{layers} layers, {params / 1e6:.0f}M parameters, bf16, median of {args.rounds} rounds")
        for name, row in result.items():
            print(
                f"  {name:<15} {row['median_s']:7.2f} s   peak RSS {row['peak_rss_mb']:7.0f} MB"
                f"   all processes' PSS {row['peak_pss_mb']:6.0f} MB"
            )
        print(f"  sparsecheck / floor      {sc['median_s'] / floor['median_s']:.2f}x   (target <= 1.5x)")
        print(f"  naive / sparsecheck      {naive['median_s'] / sc['median_s']:.1f}x   (target >= 20x)")
        more = result["sparsecheck+5"]["median_s"] / sc["median_s"] - 1
        print(f"  + overlap & similarity   {more:+.0%} time   (target < +50%)")
        extra = sc["peak_rss_mb"] - floor["peak_rss_mb"]
        print(f"  RSS sparsecheck - floor  {extra:+.0f} MB (target <= +300 MB)")


if __name__ == "__main__":
    main()
