"""Memory, judged in one place: the RAM available now, refusing an allocation the machine cannot
hold, the budget one batch of tiles may use on a device, and keeping freed buffers in the heap
during a prediction on a CPU."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
import threading

__all__ = ["available_memory", "free_memory", "check_allocation", "memory_budget", "reuse_freed_memory",
           "keeps_freed_memory", "HEAP_GROWTH"]

#: how much more memory a heap without mmap held than the feature maps alive at once in it (3D
#: tiles: 420-440 bytes per voxel held for about 270 alive; benchmarks/README.md)
HEAP_GROWTH = 1.6


def available_memory() -> int | None:
    """Bytes of RAM available now, page cache included (None where the platform does not say)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - e.g. Windows
        return None


def check_allocation(nbytes: int, what: str, *, hint: str = "") -> None:
    """Refuse to allocate ``nbytes`` in RAM when the machine cannot hold them."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs {nbytes / 2**30:.1f} GiB of memory but {available / 2**30:.1f} GiB "
                          f"are available{'; ' + hint if hint else ''}")


def free_memory(device) -> int | None:
    """Bytes free now where ``device`` computes: the GPU's free memory on CUDA, the RAM available
    otherwise (None where the platform does not say)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory()


def memory_budget(device) -> int:
    """Bytes one batch of tiles may use for activations."""
    free = free_memory(device)
    if device.type == "cuda":
        return int(free * 0.6)
    return int(min((8 << 30 if free is None else free) * 0.25, 4 << 30))


_malloc_lock = threading.Lock()
_malloc_users = 0


@functools.lru_cache(maxsize=None)
def _libc():
    if not sys.platform.startswith("linux") or os.environ.get("NAPARI_UNET_NO_MALLOC_TUNING"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    return libc


def keeps_freed_memory(device, peak_bytes: int | None = None) -> bool:
    """Whether :func:`reuse_freed_memory` keeps freed buffers for a prediction on ``device``
    whose forward passes hold ``peak_bytes`` at once (None: not known, e.g. planes): on a
    Linux/glibc CPU, unless NAPARI_UNET_NO_MALLOC_TUNING is set or the heap's growth
    (:data:`HEAP_GROWTH`) would take it past :func:`memory_budget`, which sized the tiles."""
    if device.type != "cpu" or _libc() is None:
        return False
    return peak_bytes is None or peak_bytes * HEAP_GROWTH <= memory_budget(device)


@contextlib.contextmanager
def reuse_freed_memory(device: torch.device, peak_bytes: int | None = None):
    """On Linux/glibc CPUs, keep freed activation buffers in the heap during a prediction.

    glibc returns every allocation above ~32 MB to the kernel when it is freed, so each forward
    of a big tile page-faults its ~2 GB of activations afresh: ~20% of the CPU time went to the
    kernel (paper net, 1212 x 1212 tile). Switching mmap off for the duration makes the next
    tile reuse the same memory; afterwards the defaults are restored and the heap is trimmed.
    Such a heap holds more than the maps alive in it (it cannot always reuse a freed buffer for a
    map of another size): with ``peak_bytes``, the bytes a forward pass holds at once, it is used
    only while that growth stays within the memory budget (:func:`keeps_freed_memory`; large 3D
    tiles go without, small ones and planes with). Set NAPARI_UNET_NO_MALLOC_TUNING=1 to disable.
    """
    global _malloc_users
    libc = _libc() if keeps_freed_memory(device, peak_bytes) else None
    if libc is None:
        yield
        return
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    with _malloc_lock:
        if _malloc_users == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        _malloc_users += 1
    try:
        yield
    finally:
        with _malloc_lock:
            _malloc_users -= 1
            if _malloc_users == 0:
                libc.mallopt(M_MMAP_MAX, 65536)  # the glibc defaults
                libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
                libc.malloc_trim(0)
