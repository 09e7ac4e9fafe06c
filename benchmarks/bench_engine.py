"""Choose the compare engine by measurement: numpy, the fused C extension, and numba.

For a bf16 pair of 16 Mi entries with 0%, 1%, 15% and 100% of the entries moved it prints the
CPU time per entry of sparsecheck's compare with the numpy path and with the fused extension
(``native/sparsecheck-fused``), and of the same one-pass loop written for numba (bits, |Δ|, the
atol count, the histogram of every moved |Δ|, the packed mask; the dense path only, so a lower
bound of a numba engine's cost); then, in fresh processes, what each costs before its first
result: importing it and its first call (numba: compiling, then loading its on-disk cache).
The numpy floor (one ``a != b`` count) is printed alongside.  numba is measured only where it
is installed (``pip install numba``); it is not a dependency.  Usage::

    python benchmarks/bench_engine.py [--entries 16777216]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SHARES = (0.0, 0.01, 0.15, 1.0)

NUMBA_KERNEL = """
import numpy as np
from numba import njit

@njit(cache=True, nogil=True)
def compare_bf16_atol(a, b, tol, packed, histogram):
    bits = np.empty(2, np.uint32)
    values = bits.view(np.float32)
    changed = moved = 0
    largest = np.float32(0)
    tol32 = np.float32(tol)
    for i in range(a.size):
        bits[0] = np.uint32(a[i]) << np.uint32(16)
        bits[1] = np.uint32(b[i]) << np.uint32(16)
        d = abs(values[0] - values[1])
        if a[i] != b[i] and d != 0:
            moved += 1
            largest = max(largest, d)
            if d > tol32:
                changed += 1
                packed[i >> 3] |= np.uint8(1 << (i & 7))
            values[0] = d
            histogram[(bits[0] >> np.uint32(21)) & np.uint32(1023)] += 1
    return changed, moved, largest
"""


def pair(n: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(n, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    b = a.copy()
    b[rng.random(n) < share] ^= 1
    return a, b


def best(fn, rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        began = time.process_time()
        fn()
        times.append(time.process_time() - began)
    return min(times)


def fresh(code: str, env: dict[str, str]) -> float:
    """Seconds a fresh interpreter takes to run ``code`` minus an empty one's (median of 3)."""

    def run(source: str) -> float:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", source], check=True, env=env)
        return time.perf_counter() - began

    base = sorted(run("import numpy") for _ in range(3))[1]
    return sorted(run(code) for _ in range(3))[1] - base


def per_entry(a: np.ndarray, b: np.ndarray, kernel: object) -> dict[str, float]:
    """CPU ns per entry of each engine on the pair."""
    from sparsecheck.metrics import _fused
    from sparsecheck.metrics._equality import EqualityPolicy, compare_arrays

    policy = EqualityPolicy("atol", 1e-5)
    out = {"floor": best(lambda: np.count_nonzero(a != b))}
    os.environ["SPARSECHECK_COMPARE"] = "numpy"
    out["numpy"] = best(lambda: compare_arrays(a, "bfloat16", b, "bfloat16", policy))
    os.environ.pop("SPARSECHECK_COMPARE")
    if _fused.extension() is not None:
        out["fused"] = best(lambda: compare_arrays(a, "bfloat16", b, "bfloat16", policy))
    if callable(kernel):
        packed, histogram = np.zeros((a.size + 7) // 8, np.uint8), np.zeros(1024, np.int64)
        kernel(a, b, 1e-5, packed, histogram)
        out["numba"] = best(lambda: kernel(a, b, 1e-5, packed, histogram))
    return {name: seconds / a.size * 1e9 for name, seconds in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1 << 24)
    n = parser.parse_args().entries
    os.environ.pop("SPARSECHECK_COMPARE", None)
    from sparsecheck.metrics import _fused

    tmp = tempfile.mkdtemp(prefix="bench-engine-")
    with open(os.path.join(tmp, "numba_kernel.py"), "w") as f:
        f.write(NUMBA_KERNEL)
    sys.path.insert(0, tmp)
    os.environ["NUMBA_CACHE_DIR"] = tmp
    try:
        from numba_kernel import compare_bf16_atol as kernel
    except ImportError:  # numba is not installed
        kernel = None
    rows: dict[str, dict[float, float]] = {}
    for share in SHARES:
        for name, ns in per_entry(*pair(n, share), kernel).items():
            rows.setdefault(name, {})[share] = ns
    print(f"bf16 pair, {n:,} entries, atol 1e-5: CPU ns per entry (best of 3), by share of entries moved")
    print("  engine   " + "".join(f"{share:>8.0%}" for share in SHARES))
    for name, values in rows.items():
        if values:
            print(f"  {name:<8} " + "".join(f"{values[share]:>8.2f}" for share in SHARES))
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "cold"))
    first = (
        "import numpy as np\nfrom sparsecheck.metrics._equality import EqualityPolicy, compare_arrays\n"
        "a = np.zeros(1024, np.uint16)\n"
        "compare_arrays(a, 'bfloat16', a, 'bfloat16', EqualityPolicy('atol', 1e-5))"
    )
    print("before the first result, in a fresh process (import + first call, over `import numpy`):")
    print(f"  numpy    {fresh(first, dict(env, SPARSECHECK_COMPARE='numpy')):6.3f} s")
    if _fused.extension() is not None:
        print(f"  fused    {fresh(first, env):6.3f} s")
    if kernel is not None:
        call = (
            f"import sys; sys.path.insert(0, {tmp!r})\nimport numpy as np\n"
            "from numba_kernel import compare_bf16_atol\na = np.zeros(1024, np.uint16)\n"
            "compare_bf16_atol(a, a, 1e-5, np.zeros(128, np.uint8), np.zeros(1024, np.int64))"
        )
        began = time.perf_counter()  # the first run compiles and fills the cache
        subprocess.run([sys.executable, "-c", call], check=True, env=env)
        print(f"  numba    {time.perf_counter() - began:6.3f} s  first run ever (compiles, fills the cache)")
        print(f"  numba    {fresh(call, env):6.3f} s  later runs (import numba, load the cache)")


if __name__ == "__main__":
    main()
