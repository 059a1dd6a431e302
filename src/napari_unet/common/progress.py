"""Progress of long work, for scripts, the CLI and the widgets alike.

* ``Progress``: the ``progress(done, total)`` callables core functions accept.
* :func:`drive`: run a ``(done, total)`` generator to its end, reporting each step.
* :func:`part`: a ``(done, total)`` generator as one part of a longer job's bar.
* :func:`format_seconds`: ``75`` -> ``"1:15"``; :func:`parse_duration`: ``"1:15"``, ``"75 s"`` -> ``75.0``.
* :class:`ProgressBar`: a one-line text bar on stderr (redrawn on a terminal, a line every few
  seconds in a cluster job's log).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Generator

__all__ = ["Progress", "drive", "part", "format_seconds", "parse_duration", "ProgressBar"]

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


_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0,
          "mins": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0,
          "hours": 3600.0}


def parse_duration(text: str, bare_unit: float = 60.0) -> float:
    """Seconds of a duration typed by a person: ``"45 s"``, ``"1:30"`` (m:ss), ``"1:00:00"``
    (h:mm:ss), ``"2 min"``, ``"1h 30min"``, ``"1.5 h"``; a bare number counts in ``bare_unit``
    seconds (minutes by default). ``"no limit"``, ``"none"`` or ``""`` is 0. ValueError otherwise.

    >>> [parse_duration(t) for t in ("45 s", "1:30", "2 min", "1h 30m", "0.75", "1:00:00")]
    [45.0, 90.0, 120.0, 5400.0, 45.0, 3600.0]
    """
    import re

    words = str(text).strip().lower()
    if words in ("", "0", "no limit", "none", "off"):
        return 0.0
    if ":" in words:
        parts = words.split(":")
        if len(parts) > 3 or not all(re.fullmatch(r"\d+(\.\d*)?", p.strip()) for p in parts):
            raise ValueError(f"cannot read {text!r} as a duration; write e.g. 45 s, 1:30 or 5 min")
        seconds = 0.0
        for p in parts:
            seconds = seconds * 60.0 + float(p)
        return seconds
    pieces = re.findall(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", words)
    if not pieces or re.sub(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", "", words).strip():
        raise ValueError(f"cannot read {text!r} as a duration; write e.g. 45 s, 1:30 or 5 min")
    seconds = 0.0
    for number, unit in pieces:
        if unit and unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in {text!r}; use s, min or h")
        seconds += float(number) * (_UNITS[unit] if unit else bare_unit)
    return seconds


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
