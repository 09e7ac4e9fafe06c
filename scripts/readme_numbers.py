"""Rewrite the README's quoted outputs and numbers from real runs, so that none is copied by hand.

Each generated part of README.md sits between ``<!-- readme-numbers: NAME -->`` and
``<!-- /readme-numbers: NAME -->``; the script replaces what is between the two:

- ``demo-cost``: the demo's wall time, peak memory (maximum resident set size, from
  ``/usr/bin/time -v``) and the disk it wrote (under its out folder, and the user cache
  ``~/.cache/sparsecheck`` where the SmolLM2 checkpoint is prepared);
- ``demo-output``: what ``sparsecheck demo`` printed (its standard output, the failure and warning
  blocks left out, the home folder shown as ``~``);
- ``demo-numbers``: the numbers the findings under the table rest on, from the demo's JSON report;
- ``quickstart``: ``specs/examples/generate.py`` and a ``sparsecheck diff`` of two of the
  checkpoints it wrote, run from the repository root as the Quickstart shows them;
- ``bench-engine``, ``bench-cold-336m``, ``bench-cold-7b``, ``bench-transport``: the output of
  ``benchmarks/bench_engine.py``, ``benchmarks/bench_cold.py --pair 336m|7b`` and
  ``benchmarks/bench_transport.py``, quoted from a
  saved run (``--bench PART=LOG``: the benchmarks need root and a quiet machine, and the 7B one
  about 30 minutes, so they are run apart).

Usage (from the repository root)::

    python scripts/readme_numbers.py          # run the demo in ./sparsecheck-demo, then the quickstart
    python scripts/readme_numbers.py --tiny   # the same with `demo --tiny` (a check of the script)
    python scripts/readme_numbers.py --demo-log demo.out --time-log demo.time --demo-out sparsecheck-demo
        # a demo run already: `/usr/bin/time -v -o demo.time sparsecheck demo > demo.out`
    python scripts/readme_numbers.py --check          # exit 1 when the README is not what the runs print
    python scripts/readme_numbers.py --skip-demo --bench bench-cold-7b=7b.log  # quote a benchmark's run

Exit status: 0 when the README was written (or, with ``--check``, is up to date), 1 when it is not
up to date, 2 when a run failed or a marker is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
USER_CACHE = Path.home() / ".cache" / "sparsecheck"
#: The Quickstart's first look: two checkpoints that generate.py writes.
QUICKSTART_DIFF = [
    "diff",
    "specs/examples/checkpoints/sft",
    "specs/examples/checkpoints/rl-a",
    "--per",
    "layer",
]
#: Lines of the diff output quoted (the rest is elided).
QUICKSTART_LINES = 30
#: The README parts that quote a benchmark's saved output.
BENCH_PARTS = ("bench-engine", "bench-cold-336m", "bench-cold-7b", "bench-transport")


def sparsecheck() -> str:
    script = Path(sys.executable).parent / "sparsecheck"
    return str(script) if script.is_file() else "sparsecheck"


def run_demo(out: Path, tiny: bool) -> tuple[str, str]:
    """Run the demo under ``/usr/bin/time -v``; its standard output and time's report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    time_log = out.parent / f"{out.name}.time"
    command = ["/usr/bin/time", "-v", "-o", str(time_log), sparsecheck(), "demo", "--out", str(out)]
    done = subprocess.run(command + (["--tiny"] if tiny else []), capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"readme_numbers: the demo exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout, time_log.read_text()


def disk_use(folder: Path) -> int:
    """Bytes under ``folder`` (files counted once, links not followed)."""
    if not folder.exists():
        return 0
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def size_text(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def clock_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def time_report(text: str) -> tuple[float, float]:
    """Wall seconds and peak resident bytes from ``/usr/bin/time -v``'s report."""
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if wall is None or peak is None:
        sys.exit("readme_numbers: not a report of /usr/bin/time -v (no wall time or peak memory)")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds, int(peak.group(1)) * 1024


def quoted_demo_output(stdout: str) -> str:
    """The demo's lines from its first one to the table's end, then its summary line."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("sparsecheck demo (")), None)
    if start is None:
        sys.exit("readme_numbers: no `sparsecheck demo (` line in the demo's output")
    lines = lines[start:]
    blocks = [i for i, line in enumerate(lines) if line in ("failures", "warnings")]
    table_end = blocks[0] if blocks else len(lines) - 1
    shown = [*lines[:table_end], *([lines[-1]] if blocks else [])]
    text = "\n".join(line.rstrip() for line in shown).replace(str(Path.home()), "~")
    return text.replace(str(ROOT), ".")


def _check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    for check in report["checks"]:
        if check["id"] == check_id:
            return check
    return {}


def _field(check: dict[str, Any], name: str) -> Any:
    """A result field of ``check``, or its value for ``value``."""
    if name == "value":
        return check.get("value")
    return ((check.get("result") or {}).get("fields") or {}).get(name)


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}g}"


def demo_numbers(report: dict[str, Any]) -> str:
    """The findings' numbers, one bullet per suite, read from the JSON report."""
    sparsity = {
        name: _check(report, cid)
        for name, cid in (
            ("SFT", "sft-sparsity"),
            ("DPO", "dpo-sparser-than-sft"),
            ("GRPO", "grpo-sparser-than-sft"),
        )
    }
    precision = _check(report, "dpo-storage-precision")
    overlaps = {cid: _check(report, cid) for cid in ("two-seeds", "two-datasets", "two-algorithms")}
    lines = [
        "- unchanged at |Δ| ≤ 1e-5: "
        + ", ".join(f"{name} {_num(_field(c, 'sparsity'))}" for name, c in sparsity.items())
        + f"; DPO exactly unchanged {_num(_field(precision, 'sparsity_exact'))}, "
        f"bf16-rounded {_num(_field(precision, 'sparsity_if_bf16'))}",
        f"- subnetwork-only run: equal to the full run within 1e-4 for "
        f"{_num(_field(_check(report, 'sub-weights-match-full'), 'equal_fraction'))} of entries; accuracy "
        f"{_num(_field(_check(report, 'sub-recovers-full'), 'accuracy'))} vs "
        f"{_num(_field(_check(report, 'full-accuracy'), 'accuracy'))} (full)",
        "- overlap o1 against uniform chance (lift): "
        + ", ".join(
            f"{cid} {_num(_field(c, 'o1'))} vs {_num(_field(c, 'baseline_o1'))} "
            f"(×{_num(_field(c, 'lift_o1'))})"
            for cid, c in overlaps.items()
        ),
        f"- transient share {_num(_field(_check(report, 'transient-share'), 'value'))}; "
        f"update rank {_num(_field(_check(report, 'update-rank'), 'value'), 4)}% of full; "
        f"LayerNorm entries unchanged {_num(_field(_check(report, 'layernorms-untouched'), 'value'))}; "
        f"sparsity spread over tolerances {_num(_field(_check(report, 'tolerance-robustness'), 'spread'))}",
    ]
    return "\n".join(lines)


def run_quickstart() -> str:
    """The Quickstart's commands and what they print, run from the repository root."""
    generate = subprocess.run(
        [sys.executable, "specs/examples/generate.py"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    diff = subprocess.run([sparsecheck(), *QUICKSTART_DIFF], cwd=ROOT, capture_output=True, text=True)
    if diff.returncode != 0:
        sys.exit(f"readme_numbers: sparsecheck diff exited {diff.returncode}:\n{diff.stdout}{diff.stderr}")
    lines = diff.stdout.strip("\n").splitlines()
    shown = lines[:QUICKSTART_LINES] + (["..."] if len(lines) > QUICKSTART_LINES else [])
    return "\n".join(
        [
            "```console",
            "$ python specs/examples/generate.py",
            generate.stdout.rstrip(),
            "$ sparsecheck " + " ".join(QUICKSTART_DIFF),
            *shown,
            "```",
        ]
    )


def replace_part(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- readme-numbers: {name} -->", f"<!-- /readme-numbers: {name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        sys.exit(f"readme_numbers: README.md has no {begin} … {end} part")
    return pattern.sub(lambda _: f"{begin}\n{body}\n{end}", text, count=1)


def quote_bench(text: str, item: str) -> str:
    """``text`` with the part named by ``item`` (``PART=LOG``) holding the log, as a code block."""
    part, _, log = item.partition("=")
    if part not in BENCH_PARTS or not log:
        sys.exit(f"readme_numbers: --bench {item}: expected PART=LOG, PART one of {', '.join(BENCH_PARTS)}")
    return replace_part(text, part, "```\n" + Path(log).read_text().strip("\n") + "\n```")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--demo-out", type=Path, default=Path("sparsecheck-demo"), help="the demo's --out folder"
    )
    parser.add_argument("--demo-log", type=Path, help="the standard output of a demo already run")
    parser.add_argument("--time-log", type=Path, help="/usr/bin/time -v's report of that run")
    parser.add_argument("--tiny", action="store_true", help="run `demo --tiny` (to try the script)")
    parser.add_argument("--skip-demo", action="store_true", help="rewrite only the quickstart part")
    parser.add_argument(
        "--bench",
        action="append",
        default=[],
        metavar="PART=LOG",
        help=f"quote a benchmark's saved output in that part ({', '.join(BENCH_PARTS)})",
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if the README would change"
    )
    args = parser.parse_args(argv)

    text = README.read_text(encoding="utf-8")
    out = args.demo_out.resolve()
    if not args.skip_demo:
        if args.demo_log:
            if args.time_log is None:
                parser.error("--demo-log needs --time-log")
            stdout, timing = args.demo_log.read_text(), args.time_log.read_text()
        else:
            stdout, timing = run_demo(out, args.tiny)
        seconds, peak = time_report(timing)
        mode = re.search(r"^sparsecheck demo \((\w+)\)", stdout, re.M)
        cost = (
            f"`sparsecheck demo` in {mode.group(1) if mode else 'unknown'} mode: "
            f"{clock_text(seconds)} wall time on this project's 2-core machine, "
            f"peak memory {size_text(peak)}; "
            f"it writes {size_text(disk_use(out))} under `{args.demo_out.name}/` and "
            f"{size_text(disk_use(USER_CACHE))} under `~/.cache/sparsecheck/`"
            f" (the converted SmolLM2 checkpoint, kept for the next run)."
        )
        report = json.loads((out / "report.json").read_text())
        text = replace_part(text, "demo-cost", cost)
        text = replace_part(text, "demo-output", "```\n" + quoted_demo_output(stdout) + "\n```")
        text = replace_part(text, "demo-numbers", demo_numbers(report))
    text = replace_part(text, "quickstart", run_quickstart())
    for item in args.bench:
        text = quote_bench(text, item)
    if args.check:
        return 0 if text == README.read_text(encoding="utf-8") else 1
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, README)
    print(f"rewrote {README.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    if shutil.which("/usr/bin/time") is None:
        sys.exit("readme_numbers: needs /usr/bin/time (Debian: apt-get install time)")
    raise SystemExit(main())
