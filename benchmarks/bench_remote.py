"""Remote checkpoints: ``diff`` over HTTP range requests and from an S3 server, against the same
pair read locally in the same run, and the bytes a LayerNorm-only check reads.

Both servers run on 127.0.0.1 (the tests' HTTP range server, moto's S3 server), so the
numbers measure sparsecheck's remote path (requests, read-ahead, parsing) on a loopback link,
not a real network.  Prints wall times, throughput (checkpoint bytes / wall time) and ratios
against the local run::

    python benchmarks/bench_remote.py [--layers 8] [--hidden 1024]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sparsecheck.testing import plant_changes, tiny_llama_state_dict, write_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "remote"))
from remote_servers import range_server


def _diff(base: str, tuned: str, report: Path, *more: str, env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``sparsecheck diff`` in a fresh process (imports included)."""
    began = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsecheck",
            "diff",
            base,
            tuned,
            "-q",
            "--no-cache",
            "--json",
            str(report),
            *more,
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def _sparsity(report: Path) -> float:
    return float(json.loads(report.read_text())["checks"][0]["value"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args()
    import os

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = tiny_llama_state_dict(
            layers=args.layers,
            hidden=args.hidden,
            intermediate=args.hidden * 11 // 4,
            vocab=32000,
            dtype=torch.bfloat16,
        )
        tuned, _ = plant_changes(base, 0.1, seed=1)
        for side, state in (("base", base), ("tuned", tuned)):
            write_checkpoint(root / "ckpt" / side, state, "sharded", shards=3)
        files = [f for side in ("base", "tuned") for f in (root / "ckpt" / side).iterdir()]
        total = sum(f.stat().st_size for f in files)
        print(
            f"pair: {len(base)} tensors per side, {total / 1e6:.1f} MB in all "
            f"({args.layers} layers, bf16, 3 shards)"
        )
        local = root / "ckpt"
        results: dict[str, tuple[float, float]] = {}
        seconds = _diff(
            str(local / "base"), str(local / "tuned"), root / "local.json"
        )  # warms the page cache
        seconds = _diff(str(local / "base"), str(local / "tuned"), root / "local.json", "--workers", "1")
        results["local (one process)"] = (seconds, _sparsity(root / "local.json"))

        with range_server(local) as http:
            seconds = _diff(f"{http.url}/base", f"{http.url}/tuned", root / "http.json")
            results["HTTP range requests"] = (seconds, _sparsity(root / "http.json"))
            print(f"HTTP: {http.sent / 1e6:.1f} MB served in {http.requests} requests for a full diff")
            http.reset()
            _diff(f"{http.url}/base", f"{http.url}/tuned", root / "norms.json", "--include", "*norm*")
            weights = sum(f.stat().st_size for f in files if f.suffix == ".safetensors")
            print(
                f"LayerNorm-only check over HTTP: {http.sent:,} bytes served of {weights:,} "
                f"({100 * http.sent / weights:.3f}% of the weight files), {http.requests} requests"
            )

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        server.start()
        try:
            host, port = server.get_host_and_port()
            env = dict(os.environ)
            env.update(
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench-secret",
                AWS_DEFAULT_REGION="us-east-1",
                AWS_ENDPOINT_URL=f"http://{host}:{port}",
            )
            client = boto3.client(
                "s3",
                endpoint_url=env["AWS_ENDPOINT_URL"],
                aws_access_key_id="bench",
                aws_secret_access_key="bench-secret",
                region_name="us-east-1",
            )
            client.create_bucket(Bucket="bench")
            for file in files:
                client.upload_file(str(file), "bench", f"{file.parent.name}/{file.name}")
            seconds = _diff("s3://bench/base", "s3://bench/tuned", root / "s3.json", env=env)
            results["S3 (moto server)"] = (seconds, _sparsity(root / "s3.json"))
        finally:
            server.stop()

        baseline = results["local (one process)"][0]
        print(f"\n{'source':<22} {'wall s':>8} {'MB/s':>8} {'x local':>8}  sparsity")
        for name, (seconds, sparsity) in results.items():
            print(
                f"{name:<22} {seconds:8.2f} {total / 1e6 / seconds:8.1f} "
                f"{seconds / baseline:8.2f}  {sparsity:.6f}"
            )


if __name__ == "__main__":
    main()
