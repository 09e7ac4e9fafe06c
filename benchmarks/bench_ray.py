"""``--executor ray`` on a local Ray instance against ``--workers 2``, on a multi-checkpoint spec.

Builds once (under ``~/.cache/sparsecheck-bench``) a base and a training run of STEPS
``checkpoint-<step>`` folders of a bf16 Llama-shaped model (hidden 1024, 8 layers; each step
moves a further share of the entries), then times ``sparsecheck run`` of a spec with
``transient_updates`` and ``update_categories`` over the run, alternating, with local workers
(``--workers 2``) and with ``--executor ray`` on a local Ray head with 2 CPUs that this script
starts (``ray start --head --block``) and stops.  It prints the medians and checks that both give
the same results.  Usage::

    python benchmarks/bench_ray.py [--rounds 3] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_cold import llama7b_shapes, write_safetensors
from bench_compare import DEFAULT_DATA

HIDDEN, INTERMEDIATE, LAYERS, VOCAB = 1024, 2816, 8, 32000

SPEC = """version: 1
checkpoints: {{base: "{base}", rl: "{run}"}}
checks:
  - {{id: transient, metric: transient_updates, args: {{base: base, run: [rl]}}}}
  - {{id: categories, metric: update_categories, args: {{base: base, run: [rl]}}}}
"""


def build(root: Path, steps: int) -> tuple[Path, Path]:
    """The base and the run's checkpoint folders, written once."""
    import numpy as np

    folder = root / f"run-h{HIDDEN}-l{LAYERS}-s{steps}"
    base, run = folder / "base", folder / "run"
    if (run / f"checkpoint-{steps}" / "model.safetensors").exists():
        return base, run
    rng = np.random.default_rng(1)
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in [None, *range(LAYERS)]:
        for name, shape in llama7b_shapes(layer).items():
            scale = {4096: HIDDEN, 11008: INTERMEDIATE}
            shapes[name] = tuple(VOCAB if d == 32000 else scale.get(d, d) for d in shape)
    state = {n: rng.integers(0x3B80, 0x3D80, size=s, dtype=np.uint16) for n, s in shapes.items()}
    for step in range(steps + 1):
        folder_step = base if step == 0 else run / f"checkpoint-{step}"
        folder_step.mkdir(parents=True, exist_ok=True)
        if step:  # each step moves ~5% of the entries (some back to where they were)
            for tensor in state.values():
                tensor ^= (rng.random(tensor.shape) < 0.05).astype(np.uint16)
        write_safetensors(folder_step / "model.safetensors", state)
    return base, run


def ray_head() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    ray = str(Path(sys.executable).with_name("ray"))
    command = [ray, "start", "--head", "--block", "--num-cpus", "2", "--node-ip-address", "127.0.0.1"]
    command += ["--port", str(port), "--include-dashboard", "false", "--disable-usage-stats"]
    head = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(2)  # the raylet follows the GCS
                return head, f"127.0.0.1:{port}"
        time.sleep(0.2)
    raise SystemExit("the Ray head did not start in 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    base, run = build(args.data, args.steps)
    size = sum(f.stat().st_size for f in [*base.glob("*.safetensors"), *run.glob("*/*.safetensors")])
    head, address = ray_head()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "transient.sparsecheck.yaml"
            spec.write_text(SPEC.format(base=base, run=run))
            sparsecheck = [sys.executable, "-m", "sparsecheck", "run", str(spec), "--no-cache", "-q"]
            commands = {
                "--workers 2": [*sparsecheck, "--workers", "2", "--json", f"{tmp}/local.json"],
                "--executor ray": [*sparsecheck, "--executor", "ray", "--json", f"{tmp}/ray.json"],
            }
            env = dict(os.environ, RAY_ADDRESS=address, RAY_AUTH_MODE="disabled")
            times: dict[str, list[float]] = {name: [] for name in commands}
            for round_index in range(args.rounds):
                for name in commands if round_index % 2 == 0 else reversed(commands):
                    began = time.perf_counter()
                    subprocess.run(commands[name], check=True, env=env, stdout=subprocess.DEVNULL)
                    times[name].append(time.perf_counter() - began)
            same = [
                json.loads(Path(f"{tmp}/{which}.json").read_text())["checks"] for which in ("local", "ray")
            ]
            fields = [[(c["id"], c["status"], c["value"], c["result"]) for c in checks] for checks in same]
    finally:
        head.terminate()  # ray start --block stops the head's processes when it ends
        try:
            head.wait(60)
        finally:
            if head.poll() is None:
                os.killpg(head.pid, signal.SIGKILL)
    print(
        f"transient_updates + update_categories over base + {args.steps} checkpoints ({size / 1e9:.1f} GB), "
        f"median of {args.rounds} rounds, local Ray head with 2 CPUs (started once, outside the times)"
    )
    for name, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {name:<16} {statistics.median(values):6.2f} s  (runs: {runs} s)")
    print(f"  same results: {fields[0] == fields[1]}")


if __name__ == "__main__":
    main()
