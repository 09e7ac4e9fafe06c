"""Render an HTML report in headless Chromium and save a PNG screenshot, to look at the page.

Needs Chromium (on Debian: ``apt-get install -y chromium``; ``--browser`` names another
binary).  Without a report it writes one first from the example suite::

    python specs/examples/generate.py
    sparsecheck run specs/examples --html /tmp/report.html
    python scripts/screenshot_report.py /tmp/report.html -o /tmp/report.png

    python scripts/screenshot_report.py -o /tmp/report.png   # runs the example suite itself

Chromium runs offline and sandbox-free (for root in containers) with a throw-away profile;
the page is self-contained, so nothing is fetched.  ``--height`` sets the window height,
which is how much of the page the screenshot shows.  Exit status: 0 when the PNG was written,
1 when Chromium is missing or fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "specs" / "examples"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(name: str | None) -> str | None:
    """The browser binary: ``name`` when given, else the first of :data:`BROWSERS` on PATH."""
    for candidate in (name,) if name else BROWSERS:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def example_report(path: Path) -> None:
    """Write the example suite's report to ``path`` (generating its checkpoints first)."""
    subprocess.run([sys.executable, str(EXAMPLES / "generate.py")], check=True)
    run = [sys.executable, "-m", "sparsecheck", "run", str(EXAMPLES), "--no-cache", "--html", str(path)]
    subprocess.run(run, check=False)  # failing checks still write the report
    if not path.is_file():
        raise SystemExit(f"screenshot_report: the example run wrote no report at {path}")


def screenshot(browser: str, html: Path, png: Path, width: int, height: int) -> None:
    """Load ``html`` in headless ``browser`` and save the window as ``png``."""
    with tempfile.TemporaryDirectory(prefix="sparsecheck-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 or not png.is_file():
        raise SystemExit(f"screenshot_report: {browser} failed ({done.returncode}):\n{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("html", nargs="?", type=Path, help="the report (default: run the example suite)")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.png"), help="the PNG to write")
    parser.add_argument("--browser", help="Chromium or Chrome binary (default: found on PATH)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)
    browser = find_browser(args.browser)
    if browser is None:
        print(
            "screenshot_report: no Chromium found; install it (apt-get install -y chromium)", file=sys.stderr
        )
        return 1
    html = args.html
    if html is None:
        html = Path(tempfile.mkdtemp(prefix="sparsecheck-report-")) / "report.html"
        example_report(html)
    screenshot(browser, html, args.output, args.width, args.height)
    print(f"wrote {args.output} ({args.width}x{args.height}) from {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
