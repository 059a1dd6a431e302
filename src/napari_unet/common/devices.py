"""Where and in which precision the network runs: device choice, autocast dtype, CPU threads.

* :func:`select_device`: the requested device, or CUDA, then Apple MPS, then the CPU.
* :func:`resolve_precision`: "auto" -> bf16 on CPUs with native bf16 and on CUDA (fp16 where
  CUDA lacks bf16), fp32 elsewhere.
* :func:`fast_memory_format`: the layout the network predicts in (channels last on CPUs and
  CUDA), and a 3D network trains in.
* :class:`ThreadTuner`: the number of CPU threads that trains fastest now, found while training
  (the Train widget's runs share the cores with napari's drawing).
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Callable

import torch

__all__ = ["select_device", "resolve_precision", "fast_memory_format", "ThreadTuner", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else CUDA, then Apple MPS, then the CPU.

    Raises ValueError when the requested device is not available here.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f'device must be "cpu", "cuda", "cuda:N", "mps" or None, got {device!r}') from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {device!r} was requested but Apple MPS is not available on this machine")
    return dev


@functools.lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX) and oneDNN uses it."""
    flags: set[str] = set()
    get_caps = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if get_caps is not None:
        try:
            flags = {k for k, v in get_caps().items() if v is True}
        except Exception:  # pragma: no cover - depends on the torch build
            flags = set()
    if not flags:
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:  # pragma: no cover - not Linux
            flags = set()
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # pragma: no cover - depends on the torch build
        onednn = native
    return native and onednn and torch.backends.mkldnn.is_available()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain fp32).

    "auto": bf16 on a CPU with native bf16, bf16 (else fp16) on CUDA, fp32 elsewhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def fast_memory_format(spatial_dims: int, device, *, training: bool = False) -> torch.memory_format | None:
    """The memory layout a network of ``spatial_dims`` (2 or 3) predicts in on ``device``, and
    trains in with ``training``: channels last (``channels_last_3d`` for a 3D network) on a CPU and
    on CUDA, where oneDNN's and cuDNN's convolutions are faster in it; None (keep the default
    layout) elsewhere, e.g. on Apple MPS. A 3D network trains 1.2-1.4 times faster per step in it
    on a CPU; a 2D network trains in the default layout, as its quality figures were measured
    (channels last gave it more iterations too, but that is not yet measured on the quality suite;
    benchmarks/README.md).

    >>> fast_memory_format(3, "cpu"), fast_memory_format(2, "mps"), fast_memory_format(2, "cpu", training=True)
    (torch.channels_last_3d, None, None)
    """
    if torch.device(device).type not in ("cpu", "cuda") or (training and int(spatial_dims) != 3):
        return None
    return torch.channels_last_3d if int(spatial_dims) == 3 else torch.channels_last


class ThreadTuner:
    """The number of CPU threads that trains fastest now, found while training.

    torch splits each operation over ``torch.get_num_threads()`` threads, all of which must finish
    before the next operation starts. When other work shares the cores (napari drawing its window
    in software OpenGL, another program), a thread that waits for a core holds up the others at
    every operation, and training can run several times slower than with fewer threads. Fed the
    seconds of each plain training step (:meth:`observe`), the tuner times ``PROBE`` steps with
    all threads and as many with half of them, and keeps half only when it is clearly faster (by
    ``MARGIN``). It probes again ``EVERY_S`` seconds later, or ``CALM_S`` seconds later when all
    threads were clearly faster (a quiet machine: a probe's half-thread steps are the slow ones);
    and at once when the steps on all threads get ``SLOWER`` times slower than the probe measured
    them (the last ``PROBE`` steps' median: other work came). :meth:`restore` puts the thread
    count back. On one thread it does nothing.
    """

    WARMUP = 2
    PROBE = 5
    MARGIN = 0.85
    EVERY_S = 30.0
    CALM_S = 120.0
    SLOWER = 1.6

    def __init__(self, threads: int | None = None, *, clock: Callable[[], float] = time.perf_counter,
                 set_threads: Callable[[int], None] = torch.set_num_threads):
        self.original = int(threads or torch.get_num_threads())
        self.candidates = [self.original, max(1, self.original // 2)]
        self.threads = self.original
        self.clock, self._set = clock, set_threads
        self.choices: list[tuple[int, dict]] = []  # (steps seen, {threads: median seconds}) of each probe
        self._seen = 0
        self._times: dict[int, list[float]] = {}
        self._probing: int | None = 0 if self.original > 1 else None  # index into candidates
        self._next_probe = None
        self._reference: float | None = None  # all threads' median step at the last probe they won
        self._recent: list[float] = []  # the last plain steps on all threads since then

    def observe(self, seconds: float) -> None:
        """Note one plain training step (no validation or preview in it) of ``seconds``."""
        self._seen += 1
        if self._seen <= self.WARMUP:
            return
        if self._probing is None:
            if self._next_probe is not None and (self.clock() >= self._next_probe or self._slowed(seconds)):
                self._start_probe()
            return
        threads = self.candidates[self._probing]
        if threads != self.threads:
            self._use(threads)
            return  # the first step on a new count is not timed
        times = self._times.setdefault(threads, [])
        times.append(float(seconds))
        if len(times) < self.PROBE:
            return
        if self._probing + 1 < len(self.candidates):
            self._probing += 1
            return
        self._choose()

    def _slowed(self, seconds: float) -> bool:
        """Whether the steps on all threads got :attr:`SLOWER` times slower than the last probe."""
        if self._reference is None or self.threads != self.original:
            return False
        self._recent = (self._recent + [float(seconds)])[-self.PROBE:]
        return len(self._recent) == self.PROBE and statistics.median(self._recent) > self.SLOWER * self._reference

    def _start_probe(self) -> None:
        self._times, self._probing, self._recent = {}, 0, []

    def _choose(self) -> None:
        medians = {t: statistics.median(v) for t, v in self._times.items()}
        full, half = self.candidates
        best = half if medians[half] < self.MARGIN * medians[full] else full
        calm = medians[full] < self.MARGIN * medians[half]
        self.choices.append((self._seen, medians))
        self._probing = None
        self._reference = medians[full] if best == full else None
        self._next_probe = self.clock() + (self.CALM_S if calm else self.EVERY_S)
        self._use(best)

    def _use(self, threads: int) -> None:
        if threads != self.threads:
            self._set(threads)
            self.threads = threads

    def restore(self) -> None:
        """Back to the thread count the tuner started with."""
        self._use(self.original)
