"""Progress of long work: training steps, snapshot recording, task evaluation, the read pass, hub
downloads.

On a terminal (stderr is a tty) an open task draws one line on stderr, redrawn at most every
0.1 s and erased when it ends (whoever ran it then prints what it did)::

    step dpo: training [########............] 4/10 steps  0:12 elapsed  ETA 0:18

Elsewhere (CI logs, files) a task prints one line when it starts and one when it ends, with its
time::

    step dpo: training ...
    step dpo: training done, 10/10 steps in 31.2s

:func:`task` opens one for a block (:func:`start` and :meth:`Task.finish` when the work is
reported by events); the innermost open task is :func:`current`, so a training backend's callback
can count the steps of the task the engine opened without knowing its name.
``-q`` turns it all off (:func:`set_enabled`).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator

#: Seconds between two redraws of a bar.
INTERVAL = 0.1
BAR_WIDTH = 20

_enabled = True
_open: list[Task] = []


def set_enabled(enabled: bool) -> None:
    """Show progress (the default) or not (``-q``)."""
    global _enabled
    _enabled = enabled


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Task:
    """One piece of long work: ``done`` of ``total`` ``unit`` (total may be learnt later)."""

    def __init__(
        self, name: str, total: int | None = None, unit: str = "steps", elapsed: float = 0.0
    ) -> None:
        self.name, self.total, self.unit = name, total, unit
        self.done = 0
        self.note = ""
        self.started = time.monotonic() - elapsed
        self._drawn_at = float("-inf")
        self._width = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def set_total(self, total: int, unit: str | None = None) -> None:
        self.total = total
        self.unit = unit or self.unit

    def update(self, done: int, note: str = "") -> None:
        """``done`` units finished so far; ``note`` says what is happening now."""
        self.done, self.note = done, note
        self._draw()

    def line(self) -> str:
        """The bar: name, done/total, elapsed and ETA."""
        total = self.total or 0
        fraction = min(self.done / total, 1.0) if total else 0.0
        filled = round(fraction * BAR_WIDTH)
        counts = f"{self.done}/{total} {self.unit}" if total else f"{self.done} {self.unit}"
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        text = f"{self.name} [{bar}] {counts}  {_clock(self.elapsed)} elapsed"
        if total and 0 < self.done < total:
            text += f"  ETA {_clock(self.elapsed / self.done * (total - self.done))}"
        return text + (f"  {self.note}" if self.note else "")

    def finish(self) -> None:
        """End the task: erase its bar, or print its end line."""
        self._erase()
        if self in _open:
            _open.remove(self)
        if _enabled and not _on_tty():
            print(self.summary(), file=sys.stderr, flush=True)

    def summary(self) -> str:
        total = f"/{self.total}" if self.total else ""
        counts = f", {self.done}{total} {self.unit}" if self.done or self.total else ""
        return f"{self.name} done{counts} in {self.elapsed:.1f}s"

    # -- drawing -------------------------------------------------------------------------------

    def _draw(self, force: bool = False) -> None:
        if not (_enabled and _on_tty()) or (_open and _open[-1] is not self):
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < INTERVAL:
            return
        self._drawn_at = now
        text = self.line()[: shutil.get_terminal_size().columns - 1]
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()
        self._width = len(text)

    def _erase(self) -> None:
        if self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
            self._width = 0


def _on_tty() -> bool:
    stream = sys.stderr
    return stream is not None and stream.isatty()


def current() -> Task | None:
    """The innermost open task, if any."""
    return _open[-1] if _open else None


def erase() -> None:
    """Erase the bar on the terminal (before printing other lines); the next update redraws it."""
    for open_task in _open:
        open_task._erase()


def start(name: str, total: int | None = None, unit: str = "steps", elapsed: float = 0.0) -> Task:
    """Open a task named ``name`` (begun ``elapsed`` seconds ago): its bar, or its start line;
    end it with :meth:`Task.finish`."""
    opened = Task(name, total, unit, elapsed)
    if _enabled and not _on_tty():
        print(f"{name} ...", file=sys.stderr, flush=True)
    erase()
    _open.append(opened)
    opened._draw(force=True)
    opened._drawn_at = float("-inf")  # the first update redraws at once
    return opened


@contextlib.contextmanager
def task(name: str, total: int | None = None, unit: str = "steps") -> Iterator[Task]:
    """A task open for the block."""
    opened = start(name, total, unit)
    try:
        yield opened
    finally:
        opened.finish()
