"""Progress of long work, for scripts, the CLI and the widgets alike.

* ``Progress``: the ``progress(done, total)`` callables core functions accept.
* :func:`drive`: run a ``(done, total)`` generator to its end, reporting each step.
* :func:`part`: a ``(done, total)`` generator as one part of a longer job's bar.
* :func:`format_seconds`: ``75`` -> ``"1:15"``.
* :class:`ProgressBar`: a one-line text bar on stderr (redrawn on a terminal, a line every few
  seconds in a cluster job's log).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Generator

__all__ = ["Progress", "drive", "part", "format_seconds", "ProgressBar"]

Progress = Callable[[int, int], Any]


def drive(gen: Generator[tuple[int, int], None, Any], progress: Progress | None = None):
    """Run a ``(done, total)`` generator to its end, calling ``progress(done, total)`` at each
    step; returns the generator's return value. If ``progress`` raises (e.g. Ctrl-C), the
    generator is closed at once, so it cancels its work and cleans up."""
    try:
        while True:
            done, total = next(gen)
            if progress is not None:
                progress(done, total)
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


def part(gen: Generator[tuple[int, int], None, Any], start: float, share: float,
         emit: Callable[[float], Any] = lambda fraction: (int(round(1000 * fraction)), 1000)):
    """Forward the steps of ``gen`` as ``emit(fraction of the whole job)``, ``gen`` filling
    ``share`` of it from ``start``; returns the generator's return value.

    ``emit`` defaults to ``(permille, 1000)`` steps. E.g. ``yield from part(prediction, 0.0, 0.8)``
    then ``yield from part(second_pass, 0.8, 0.2)``: one bar that never jumps back.

    >>> def steps():
    ...     yield 1, 2
    ...     yield 2, 2
    ...     return "done"
    >>> outer = part(steps(), 0.5, 0.5)
    >>> [next(outer), next(outer)]
    [(750, 1000), (1000, 1000)]
    """
    try:
        while True:
            done, total = next(gen)
            yield emit(start + share * (done / total if total else 1.0))
    except StopIteration as stop:
        return stop.value


def format_seconds(seconds: float | None) -> str:
    """``75`` -> ``"1:15"``; ``3700`` -> ``"1:01:40"``; None -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class ProgressBar:
    """A one-line text progress bar on ``stream`` (stderr); redraws in place on a terminal,
    prints a line every ``interval_s`` seconds otherwise (log files of cluster jobs)."""

    def __init__(self, label: str = "", stream=None, width: int = 28, interval_s: float | None = None, enabled: bool = True):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s if interval_s is not None else (0.2 if self.tty else 10.0)
        self._last = -1e9
        self._open = False

    def update(self, done: float, total: float | None, info: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        if total:
            frac = min(max(done / total, 0.0), 1.0)
            filled = int(round(frac * self.width))
            bar = "#" * filled + "." * (self.width - filled)
            text = f"{self.label} [{bar}] {100 * frac:5.1f}% {info}"
        else:
            text = f"{self.label} {info}"
        if self.tty:
            self.stream.write("\r" + text[:200].ljust(79))
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, message: str = "") -> None:
        if not self.enabled:
            return
        if self._open:
            self.stream.write("\n")
            self._open = False
        if message:
            self.stream.write(message + "\n")
        self.stream.flush()
