"""A large plane labelled block by block on the cores there are: each block labels a window of
the probabilities (its core and the context :func:`~napari_unet.labels.instances.label_context`
asks for), on a thread of its own (the sorting, distance transform and watershed inside release
Python's lock), and the blocks' objects are joined across their faces as on a cluster
(:mod:`napari_unet.labels.merge`): the same objects as one :func:`~napari_unet.to_labels` of the
whole plane, numbered in another order."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .instances import label_context, to_labels
from .merge import BlockGrid, block_labels, merge_faces
from .options import LabelOptions

__all__ = ["MIN_BLOCK_PIXELS", "label_workers", "to_labels_in_blocks"]

#: the fewest pixels of a block: a plane smaller than two of them is labelled whole (512 x 512:
#: a 1024^2 plane takes 0.39 s in four blocks on 2 threads against 0.65 s in one call)
MIN_BLOCK_PIXELS = 512 * 512


def label_workers() -> int:
    """Threads for labelling: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _block_shape(height: int, width: int, workers: int, context: int, min_pixels: int) -> tuple[int, int] | None:
    """Blocks for ``workers`` threads over a plane, each at least ``min_pixels`` and ``context``
    wide; None where one block would do."""
    n = min(workers, (height * width) // max(min_pixels, 1))
    if n < 2:
        return None
    ny = max(1, round(math.sqrt(n * height / width)))
    nx = max(1, -(-n // ny))
    by, bx = -(-height // ny), -(-width // nx)
    if min(by, bx) < context or ny * nx < 2:
        return None
    return by, bx


def to_labels_in_blocks(probabilities, options: LabelOptions, *, workers: int | None = None,
                        min_pixels: int = MIN_BLOCK_PIXELS) -> np.ndarray:
    """:func:`~napari_unet.to_labels` of ``(n_classes, ..., Y, X)`` probabilities with
    ``options``, planes of instances cut into blocks labelled on ``workers`` threads (default:
    the cores there are) and merged at their faces, the planes of a stack side by side; int32,
    ids unique over the stack. Classes, 3D objects, one core, or one plane under two blocks of
    ``min_pixels``: one ``to_labels`` call.

    >>> p = np.zeros((2, 40, 60), np.float32); p[0] = 1; p[:, 10:30, 5:55] = [[[0.0]], [[1.0]]]
    >>> labels = to_labels_in_blocks(p, LabelOptions(cell_diameter=8.0), workers=2, min_pixels=400)
    >>> int(labels.max()), bool((labels[10:30, 5:55] == 1).all())
    (1, True)
    """
    workers = label_workers() if workers is None else int(workers)
    shape = tuple(np.shape(probabilities))
    context = label_context(options.cell_diameter)
    block = _block_shape(shape[-2], shape[-1], workers, context, min_pixels) if len(shape) >= 3 else None
    if block is None and workers > 1 and int(np.prod(shape[1:-2])) > 1:  # a stack: plane by plane
        block = shape[-2:]
    if options.mode != "instances" or options.three_d or block is None:
        return to_labels(probabilities, **options.kwargs())
    grid = BlockGrid(shape[1:-2], shape[-2], shape[-1], block)
    keys = grid.keys()

    def label_block(key):
        plane, window, core = key[0], grid.window(key, context), grid.core(key)
        labels = to_labels(np.asarray(probabilities[(slice(None), *plane, *window)]), **options.kwargs())
        return block_labels(labels, tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, window)))

    with ThreadPoolExecutor(min(workers, len(keys))) as pool:
        done = dict(zip(keys, pool.map(label_block, keys)))
    luts = merge_faces({k: n for k, (_, n, _) in done.items()}, {k: faces for k, (_, _, faces) in done.items()})
    out = np.zeros(shape[1:], np.int32)
    for key, (local, _, _) in done.items():
        out[(*key[0], *grid.core(key))] = luts[key][local]
    return out
