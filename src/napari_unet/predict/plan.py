"""Tile geometry of overlap-tile prediction: which tiles cover an image, how large they may be.

Output tiles of ``step`` pixels (a multiple of the pooling factor ``g = 2**depth``) cover the
image; each tile's input is its output window plus the network's context, starting on one common
pooling grid, so the result does not depend on the tile shape (see :mod:`napari_unet.predict.tiling`).
:func:`choose_tile_shape` picks the largest tile the memory budget allows; :func:`plan_tiles`
checks a tile asked for; :func:`mirror_indices` extrapolates an image at its borders by mirroring.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..common.checks import check_int, check_pair
from ..common.devices import resolve_precision, select_device
from ..common.memory import free_memory, memory_budget
from ..model.unet import UNet

__all__ = [
    "AxisPlan",
    "choose_tile_shape",
    "plan_tiles",
    "mirror_indices",
    "bytes_per_pixel",
    "training_bytes_per_pixel",
    "batch_bytes",
    "geometry_for_step",
    "step_for_tile",
    "plan_axis",
    "balanced_step",
    "tile_batch_size",
]

logger = logging.getLogger(__name__)

# on the CPU a tile's output window is at most this many pixels per axis (or 8x the context,
# whichever is larger): a bigger tile gains little and makes progress / cancel sluggish
_CPU_MAX_STEP = 1024
_GPU_MAX_STEP = 4096
# peak feature maps of `base_channels` at full resolution alive at once in a forward pass, per
# input pixel (2D) or voxel (3D), with a margin. 2D: ~7 measured before the forward freed its maps
# as it went, kept as it was. 3D: at most 4.5 measured (allocation trace of a forward pass: the
# last skip, its up-convolution and their concatenation, and the level below; benchmarks/README.md)
_ACTIVATION_MAPS = {2: 9, 3: 4.75}
# the same for a training step (forward maps kept for the backward pass and their gradients;
# measured 9-19.5 per input pixel for the presets, allocation trace of a step)
_TRAINING_MAPS = 20


@dataclass(frozen=True)
class AxisPlan:
    """Tiling along one axis: tile i keeps image pixels [start + i*step, start + (i+1)*step),
    clipped to ``stop`` (the whole image by default, a block of it in distributed prediction)."""

    size: int  # image size along the axis (mirroring happens at 0 and size)
    step: int  # output pixels kept per tile (multiple of the pooling factor)
    tile: int  # network input size
    context: int  # image offset from a tile's input start to its kept window
    offset: int  # where the kept window starts inside the network output
    count: int  # number of tiles
    start: int = 0  # first image pixel predicted (a multiple of the pooling factor)
    stop: int | None = None  # one past the last pixel predicted (None: size)

    @property
    def end(self) -> int:
        return self.size if self.stop is None else self.stop

    @property
    def extent(self) -> int:
        return self.end - self.start

    def input_start(self, i: int) -> int:
        return self.start + i * self.step - self.context


def _ceil_to(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def geometry_for_step(model: UNet, step: int, axis: int = -1, context: int | None = None) -> tuple[int, int, int]:
    """(tile input, context, offset) for a kept window of ``step`` pixels (a multiple of the
    pooling factor) along spatial ``axis`` (default X; ``axis=0`` is Z of a 3D network).

    ``context``: the pixels a *same*-padded network's tile reads beyond its kept window (rounded
    up to the pooling factor); None: all the network's context (:meth:`UNet.margin`), which makes
    the result independent of the tiles. A *valid*-padded network always takes what it needs."""
    g = model.pool_factors[axis]
    if model.config.padding == "same":
        margin = _ceil_to(model.margin(axis) if context is None else context, g)
        return step + 2 * margin, margin, margin
    for out in range(step, step + g):
        tile = model.try_input_size(out, axis)
        if tile is not None:
            return tile, (tile - out) // 2, 0
    raise AssertionError(f"no valid output size in [{step}, {step + g})")  # pragma: no cover


def step_for_tile(model: UNet, tile: int, axis: int = -1, context: int | None = None) -> int:
    """Kept output pixels for a network input ``tile`` (valid size) along spatial ``axis``
    (``context``: as in :func:`geometry_for_step`)."""
    g = model.pool_factors[axis]
    if model.config.padding == "same":
        return tile - 2 * _ceil_to(model.margin(axis) if context is None else context, g)
    return (model.output_size_1d(tile, axis) // g) * g


def plan_axis(model: UNet, size: int, step: int, start: int = 0, stop: int | None = None, axis: int = -1,
              context: int | None = None) -> AxisPlan:
    """The tiles of ``step`` kept pixels along spatial ``axis`` of an image of ``size`` pixels
    (``context``: as in :func:`geometry_for_step`)."""
    tile, context, offset = geometry_for_step(model, step, axis, context)
    extent = (size if stop is None else stop) - start
    return AxisPlan(size=size, step=step, tile=tile, context=context, offset=offset, count=-(-extent // step),
                    start=start, stop=stop)


def balanced_step(size: int, max_step: int, g: int) -> int:
    """The smallest multiple of g covering ``size`` in as few tiles of <= max_step as possible."""
    n = -(-size // max_step)
    return _ceil_to(-(-size // n), g)


def bytes_per_pixel(model: UNet, dtype: torch.dtype | None) -> int:
    """Peak bytes per input pixel (voxel) of a forward pass in inference (``dtype``: the autocast
    dtype, None: fp32), the tile's input and probabilities included: what the tile plans budget."""
    element = 4 if dtype is None else 2
    cfg = model.config
    maps = _ACTIVATION_MAPS[cfg.spatial_dims]
    return int(maps * cfg.base_channels * element) + 8 * (cfg.in_channels + cfg.n_classes)


def training_bytes_per_pixel(model: UNet) -> int:
    """Peak bytes per input pixel (voxel) of a training step in fp32: the forward maps kept for
    the backward pass and their gradients."""
    cfg = model.config
    return _TRAINING_MAPS * cfg.base_channels * 4 + 8 * (cfg.in_channels + cfg.n_classes)


def batch_bytes(model: UNet, tile: Sequence[int], dtype, batch_size: int = 1) -> int:
    """Peak bytes of a forward pass over ``batch_size`` tiles of ``tile`` (the network input)."""
    return int(np.prod(tile)) * bytes_per_pixel(model, dtype) * int(batch_size)


def tile_batch_size(model: UNet, tile: Sequence[int], n_tiles: int, device: torch.device, dtype, batch_size,
                    asked: bool) -> int:
    """Tiles per forward pass: ``batch_size``, or None: 1 on the CPU, what fits (at most 8) on a GPU.
    A tile or batch asked for (``asked``), and any on the CPU, must fit the free memory (a
    MemoryError in plain words otherwise). ``tile``: the network input, (Y, X) or (Z, Y, X)."""
    per_tile = batch_bytes(model, tile, dtype)
    if batch_size is None:
        batch_size = 1
        if device.type == "cuda":
            batch_size = int(max(1, min(8, n_tiles, memory_budget(device) // max(per_tile, 1))))
    else:
        batch_size = check_int("batch_size", batch_size, minimum=1, maximum=4096)
    if asked or device.type != "cuda":
        need = per_tile * batch_size
        room = free_memory(device)
        if room is not None and need > room:
            raise MemoryError(f"tiles of {' x '.join(str(int(t)) for t in tile)} pixels in batches of {batch_size} "
                              f"need about {need / 2**30:.1f} GiB but {room / 2**30:.1f} GiB are free on {device}; "
                              "give a smaller tile_shape or batch_size (None chooses what fits)")
    return batch_size


def choose_tile_shape(
    model: UNet,
    image_shape: Sequence[int],
    *,
    device: str | torch.device | None = None,
    precision: str = "auto",
    budget_bytes: int | None = None,
) -> tuple[int, int]:
    """The network input tile (Y, X) ``predict_tiled`` uses by default for an image (Y, X).

    The largest valid tile whose activations fit the memory budget (60% of the free GPU memory,
    or a quarter of the available RAM on the CPU, at most 4 GiB), at most ``1024`` kept pixels
    per axis on the CPU, and balanced so that a small image gets one tile just covering it and a
    large one tiles of equal size (little work wasted past the image border).
    """
    dev = select_device(device)
    dtype = resolve_precision(precision, dev)
    g = model.pool_factor
    height, width = (int(s) for s in image_shape[-2:])
    budget = memory_budget(dev) if budget_bytes is None else int(budget_bytes)
    max_pixels = max(budget // bytes_per_pixel(model, dtype), 1)
    cap = _GPU_MAX_STEP if dev.type == "cuda" else max(_CPU_MAX_STEP, _ceil_to(8 * model.margin(), g))
    # largest square kept window within the budget
    step = g
    while step + g <= cap and geometry_for_step(model, step + g)[0] ** 2 <= max_pixels:
        step += g
    step_y = balanced_step(height, step, g)
    step_x = balanced_step(width, step, g)
    # one axis fully covered by a small image: give the other one the pixels left
    tile_y = geometry_for_step(model, step_y)[0]
    tile_x = geometry_for_step(model, step_x)[0]
    if step_y >= height and tile_y * tile_x < max_pixels:
        wide = step_x
        while wide + g <= 4 * cap and tile_y * geometry_for_step(model, wide + g)[0] <= max_pixels and wide < width:
            wide += g
        step_x = balanced_step(width, wide, g)
    elif step_x >= width and tile_y * tile_x < max_pixels:
        tall = step_y
        while tall + g <= 4 * cap and tile_x * geometry_for_step(model, tall + g)[0] <= max_pixels and tall < height:
            tall += g
        step_y = balanced_step(height, tall, g)
    return geometry_for_step(model, step_y)[0], geometry_for_step(model, step_x)[0]


def plan_tiles(
    model: UNet, height: int, width: int, tile_shape, device, dtype_name: str, window=None
) -> tuple[AxisPlan, AxisPlan]:
    """The tiles over an image ``(height, width)``, or over ``window = (ys, xs)`` (two slices whose
    starts are multiples of the pooling factor) of it: the tiles of a window lie on the same
    pooling grid as those of the whole image, so a window's probabilities equal the whole
    image's there (up to float rounding)."""
    g = model.pool_factor
    ys, xs = window if window is not None else (slice(0, height), slice(0, width))
    for name, sl in (("Y", ys), ("X", xs)):
        if sl.start % g:
            raise ValueError(f"a window must start on the pooling grid: {name} start {sl.start} is not a multiple of {g}")
    extents = (ys.stop - ys.start, xs.stop - xs.start)
    if tile_shape is None:
        tile_shape = choose_tile_shape(model, extents, device=device, precision=dtype_name)
        steps = [step_for_tile(model, t) for t in tile_shape]
    else:
        wanted = check_pair("tile_shape", tile_shape, minimum=1, maximum=65536)
        valid = model.valid_input_shape(wanted)
        if valid != wanted:
            logger.info("tile_shape %s is not a valid input for this network; using %s", wanted, valid)
        steps = []
        for axis, tile in zip("YX", valid):
            step = step_for_tile(model, tile)
            if step < g:
                smallest = geometry_for_step(model, g)[0]
                raise ValueError(
                    f"tile_shape {wanted} is too small along {axis}: a tile must keep at least {g} output "
                    f"pixels; the smallest tile for this network is {smallest}"
                )
            steps.append(step)
    # a tile larger than the image: shrink it to just cover the image (the result is the same)
    steps = [min(step, _ceil_to(extent, g)) for step, extent in zip(steps, extents)]
    if window is None:
        return plan_axis(model, height, steps[0]), plan_axis(model, width, steps[1])
    return (plan_axis(model, height, steps[0], ys.start, ys.stop),
            plan_axis(model, width, steps[1], xs.start, xs.stop))


def mirror_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Indices of image pixels [start, stop) with the borders extrapolated by mirroring."""
    idx = np.arange(start, stop)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx < size, idx, period - idx)
