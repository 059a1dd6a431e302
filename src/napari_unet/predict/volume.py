"""Overlap-tile prediction of volumes (Z, Y, X) by a 3D U-Net: seamless, in bounded memory.

The rule of :mod:`napari_unet.predict.tiling`, along all three axes: output tiles of ``step`` voxels (a
multiple of the pooling factor of each axis, ``model.pool_factors``: Z is pooled less with
``xy_only_pools``) cover the volume; each tile's input is its kept window plus the network's
context (``padding="same"``: ``model.margin(axis)`` rounded up to the pooling factor; "valid":
what the network needs), every input starting on one common pooling grid, the volume mirrored
at its six faces. A voxel gets the same value from any tile that contains it: the result does not
depend on the tile shape and equals the network run on the whole mirror-padded volume, cropped
(fp32: up to float rounding).

Tiles are read one by one (numpy, zarr, dask), normalized with the percentiles of the whole
volume or stack (``model.metadata["normalization"]``), run by the
:class:`~napari_unet.predict.engine.TileEngine` that runs planes (reading and writing in the
background, flipped views in Y / X for ``tta``), and written into ``out`` (e.g. a zarr array).

:func:`choose_volume_tile` picks the tile computing the fewest voxels in all (each tile pays its
context again) among those whose activations fit the memory budget, keeping at most
:data:`CPU_MAX_STEPS` voxels per tile on the CPU so that progress and cancel stay responsive.
Precision: ``"auto"`` is fp32 on the CPU, bf16 (else fp16) autocast on CUDA, as for planes.
:mod:`napari_unet.predict.tiling` sends a 3D network's ``predict_tiled`` / ``predict_stack`` here.

``PredictOptions(planes=(start, stop))`` predicts only those planes of each volume: their tiles
read the planes around them as context (mirrored only at the volume's faces), on the same pooling
grid, so they get what predicting the whole volume gives them, at the cost of the planes alone.
:func:`slab_window` gives the smallest part of a stack that holds a slab and all its context (the
Predict widget's slice in view).

A *preview* (``PredictOptions(context="preview")``: the Train widget's live preview of a slab)
gives each tile only :data:`PREVIEW_CONTEXT` of the network's context. The network's context is
all its receptive field could reach (for *fast3d* with one Y/X-only pooling, 24 planes and 44
pixels on each side), and a slab only a few planes deep pays it several times over; the voxels
near its edge matter little, so a third of it costs a fraction of the time and moves the
probabilities little (figures: benchmarks/README.md). Not seamless: the result depends on the tiles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Generator, Sequence

import numpy as np
import torch

from ..common.axes import check_axes
from ..common.checks import check_int
from ..common.devices import PRECISIONS, resolve_precision, select_device
from ..common.memory import check_allocation, memory_budget, reuse_freed_memory
from ..common.pixel_size import resample_image, resample_probabilities, volume_resample_factors
from ..model.fit import check_channels
from ..model.unet import UNet
from .engine import TileEngine, check_out, prepare_model
from .options import PredictOptions
from .plan import AxisPlan, balanced_step, batch_bytes, bytes_per_pixel, geometry_for_step, plan_axis, step_for_tile, tile_batch_size
from .sources import as_image_array, source_normalization
from .views import check_tta

__all__ = ["Volume", "iter_predict_volume", "iter_predict_volumes", "choose_volume_tile", "volume_axes",
           "volume_precision", "tile_contexts", "slab_range", "slab_window", "CPU_MAX_STEPS", "CONTEXTS", "PREVIEW_CONTEXT"]

logger = logging.getLogger(__name__)

#: the most voxels a tile keeps along (Z, Y, X) on the CPU (progress and cancel stay responsive)
CPU_MAX_STEPS = (64, 256, 256)
_GPU_MAX_STEPS = (256, 1024, 1024)
#: what ``PredictOptions.context`` may be
CONTEXTS = ("full", "preview")
#: the share of the network's context a preview's tile reads beyond its kept window
PREVIEW_CONTEXT = 1 / 3


def tile_contexts(model: UNet, context: str) -> tuple:
    """The context (Z, Y, X) a tile reads beyond its kept window, per ``PredictOptions.context``:
    None on every axis for ``"full"`` (the network's whole context); for ``"preview"``,
    :data:`PREVIEW_CONTEXT` of it (a *valid*-padded network always takes all it needs).

    >>> from napari_unet import UNet, ModelConfig
    >>> net = UNet.from_config(ModelConfig(depth=3, base_channels=4, padding="same", spatial_dims=3, xy_only_pools=1))
    >>> net.margins(), tile_contexts(net, "preview"), tile_contexts(net, "full")
    ((24, 44, 44), (8, 15, 15), (None, None, None))
    """
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    if context == "full" or model.config.padding != "same":
        return (None, None, None)
    return tuple(max(1, round(PREVIEW_CONTEXT * margin)) for margin in model.margins())


@dataclass(frozen=True)
class Volume:
    """A stack seen as volumes of (C, Z, Y, X); reads windows lazily from numpy / zarr / dask."""

    data: Any
    axes: str
    plane_shape: tuple[int, ...]  # the axes besides C, Z, Y, X (e.g. T): one volume per index
    n_channels: int
    shape: tuple[int, int, int]  # (Z, Y, X)

    def read(self, index: tuple[int, ...], zs: slice, ys: slice, xs: slice) -> np.ndarray:
        window = {"Z": zs, "Y": ys, "X": xs, "C": slice(None)}
        it = iter(index)
        block = np.asarray(self.data[tuple(window[ax] if ax in window else next(it) for ax in self.axes)])
        kept = [ax for ax in self.axes if ax in window]
        if "C" not in kept:
            block, kept = block[None], ["C", *kept]
        return block.transpose([kept.index(ax) for ax in "CZYX"])


def _check_3d(model) -> None:
    if not isinstance(model, UNet):
        raise TypeError(f"model must be a napari_unet.UNet, got {type(model).__name__}")
    if model.spatial_dims != 3:
        raise ValueError("volume prediction needs a 3D network (spatial_dims=3) and this one is 2D: predict a "
                         "z-stack plane by plane with predict_stack(model, data, axes='ZYX')")


def volume_axes(volume, model) -> str:
    """Axes of one volume for a 3D ``model``: "ZYX", or "CZYX" (channels first)."""
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) == 3 and model.config.in_channels == 1:
        return "ZYX"
    if len(shape) == 4:
        return "CZYX"
    n = model.config.in_channels
    want = "(Z, Y, X) or (C, Z, Y, X)" if n == 1 else f"(C, Z, Y, X) with C = {n}"
    raise ValueError(f"a 3D network needs a z-stack {want}, got shape {shape}; for a stack of volumes use "
                     "predict_stack(model, data, axes='TZYX'), for single planes a 2D network")


def make_volume(data, axes: str, model, name: str) -> Volume:
    """The stack ``data`` with ``axes`` as volumes for the 3D ``model`` (channels checked)."""
    shape = tuple(int(s) for s in data.shape)
    axes = check_axes(axes, shape, name)
    if "Z" not in axes:
        raise ValueError(f"a 3D network needs a z-stack, but {name} has axes {axes!r} (shape {shape}) without Z: "
                         "give (Z, Y, X) or (C, Z, Y, X) data (axes 'ZYX', 'CZYX', 'TZYX', ...), or use a 2D network")
    if [ax for ax in axes if ax != "C"][-3:] != ["Z", "Y", "X"]:
        raise ValueError(f"axes {axes!r}: a 3D network needs Z right before Y, X (a channel axis C may come "
                         "anywhere), e.g. 'ZYX', 'TZYX' or 'TZCYX'")
    n_channels = check_channels(model, shape, axes, name)
    plane_shape = tuple(n for ax, n in zip(axes, shape) if ax not in "CZYX")
    return Volume(data, axes, plane_shape, n_channels, tuple(shape[axes.index(ax)] for ax in "ZYX"))


def volume_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a 3D network (None: fp32): "auto" is fp32 on the CPU, bf16 (else fp16)
    on CUDA; "fp32", "bf16", "fp16" as asked (:func:`~napari_unet.common.devices.resolve_precision`)."""
    if precision == "auto" and torch.device(device).type != "cuda":
        return None
    return resolve_precision(precision, device)


def _steps(model: UNet, shape, device: torch.device, dtype, budget_bytes: int | None = None,
           contexts=(None, None, None)) -> list[int]:
    """Kept voxels per axis of the default tile: the fewest voxels computed in all, within the
    budget (``contexts``: :func:`tile_contexts`)."""
    budget = memory_budget(device) if budget_bytes is None else int(budget_bytes)
    max_voxels = max(budget // bytes_per_pixel(model, dtype), 1)
    caps = _GPU_MAX_STEPS if device.type == "cuda" else CPU_MAX_STEPS
    steps, tiles, costs = [], [], []
    for axis, (size, cap) in enumerate(zip(shape, caps)):
        g = model.pool_factors[axis]
        top = -(-min(max(cap, g), size) // g) * g
        s = np.unique([balanced_step(size, m, g) for m in range(g, top + 1, g)]).astype(np.int64)
        t = np.array([geometry_for_step(model, int(v), axis, contexts[axis])[0] for v in s], np.int64)
        steps.append(s)
        tiles.append(t)
        costs.append(t * -(-size // s))  # voxels this axis computes over the whole volume
    tz, ty, tx = np.ix_(*tiles)
    cz, cy, cx = np.ix_(*costs)
    cost = np.where(tz * ty * tx <= max_voxels, cz * cy * cx, np.iinfo(np.int64).max)
    best = np.unravel_index(int(np.argmin(cost)), cost.shape)  # nothing fits: the smallest tile
    return [int(s[i]) for s, i in zip(steps, best)]


def choose_volume_tile(model: UNet, volume_shape: Sequence[int], *, device: str | torch.device | None = None,
                       precision: str = "auto", budget_bytes: int | None = None) -> tuple[int, int, int]:
    """The network input tile (Z, Y, X) a 3D ``model`` uses by default for a volume (..., Z, Y, X).

    Among the tiles whose activations fit the memory budget (60% of the free GPU memory, or a
    quarter of the available RAM on the CPU, at most 4 GiB; activations scale with voxels), the one
    that computes the fewest voxels over the whole volume, keeping at most :data:`CPU_MAX_STEPS`
    voxels on the CPU; a small volume gets one tile just covering it.
    """
    _check_3d(model)
    dev = select_device(device)
    shape = [int(s) for s in volume_shape[-3:]]
    steps = _steps(model, shape, dev, volume_precision(precision, dev), budget_bytes)
    return tuple(geometry_for_step(model, step, axis)[0] for axis, step in enumerate(steps))


def _z_range(planes, n_z: int, g: int) -> tuple[int, int, int]:
    """``(start, stop, skip)`` of ``planes`` (``(start, stop)`` or None: all) in a volume of ``n_z``
    planes: the start rounded down to the pooling grid ``g``, ``skip`` the planes predicted before
    the ones asked for."""
    if planes is None:
        return 0, n_z, 0
    if isinstance(planes, (str, bytes)) or not hasattr(planes, "__len__") or len(planes) != 2:
        raise ValueError(f"planes must be (start, stop), got {planes!r}")
    first = check_int("planes start", planes[0], minimum=0, maximum=max(n_z - 1, 0))
    stop = check_int("planes stop", planes[1], minimum=first + 1, maximum=n_z)
    start = first // g * g
    return start, stop, first - start


def slab_range(n_z: int, z: int, depth: int) -> tuple[int, int]:
    """``(start, stop)`` of the slab of ``depth`` planes centred on plane ``z`` of a stack of
    ``n_z`` planes, kept inside the stack (all of it when it is thinner)."""
    size = max(1, min(int(depth), int(n_z)))
    start = int(np.clip(int(z) - size // 2, 0, int(n_z) - size))
    return start, start + size


def slab_window(model: UNet, n_z: int, z: int, depth: int,
                zoom: float = 1.0) -> tuple[tuple[int, int], tuple[int, int]]:
    """The slab of ``depth`` planes around plane ``z`` of a stack of ``n_z`` planes (kept inside
    the stack), and the window of the stack that holds it with all its context along Z, starting on
    the network's pooling grid: ``((window start, stop), (slab start, stop) in the window)``.
    Predicting the window with ``planes=`` the slab gives the slab the probabilities of the whole
    stack (up to float rounding), at the cost of the slab. ``zoom``: the stack is resampled along Z
    by this factor for the network (its z-step differs from the model's), so the window reaches as
    far as the network's context in the resampled planes, and a plane further for the interpolation
    (close to the whole stack's probabilities, no longer equal: the window is resampled on its own).

    >>> from napari_unet.model.unet import UNet
    >>> net = UNet(spatial_dims=3, depth=2, base_channels=2, padding="same")  # 20 planes of context
    >>> slab_window(net, 100, 50, 16), slab_window(net, 100, 2, 16), slab_window(net, 10, 9, 16)
    (((20, 78), (22, 38)), ((0, 36), (0, 16)), ((0, 10), (0, 10)))
    """
    start, stop = slab_range(n_z, z, depth)
    g = model.pool_factors[0]
    context = geometry_for_step(model, g, 0)[1]
    if zoom != 1.0:
        context = int(np.ceil(context / zoom)) + 1
    first = max(0, start - context) // g * g
    return (first, min(int(n_z), stop + context)), (start - first, stop - first)


def _plan(model: UNet, shape, tile_shape, device: torch.device, dtype, contexts, z_range) -> list[AxisPlan]:
    """The tiles along (Z, Y, X); ``z_range``: ``(start, stop)`` of the planes to predict (start on
    the pooling grid)."""
    start, stop = z_range
    extents = (stop - start, *shape[1:])
    if tile_shape is None:
        steps = _steps(model, extents, device, dtype, contexts=contexts)
    else:
        if isinstance(tile_shape, (int, np.integer)) and not isinstance(tile_shape, bool):
            tile_shape = (tile_shape,) * 3
        if isinstance(tile_shape, (str, bytes)) or not hasattr(tile_shape, "__len__") or len(tile_shape) != 3:
            raise ValueError(f"tile_shape of a 3D network must be (Z, Y, X) or one int, got {tile_shape!r}")
        wanted = tuple(check_int("tile_shape", t, minimum=1, maximum=65536) for t in tile_shape)
        valid = model.valid_input_shape(wanted)
        if valid != wanted:
            logger.info("tile_shape %s is not a valid input for this network; using %s", wanted, valid)
        steps = []
        for axis, tile in enumerate(valid):
            step, g = step_for_tile(model, tile, axis, contexts[axis]), model.pool_factors[axis]
            if step < g:
                raise ValueError(f"tile_shape {wanted} is too small along {'ZYX'[axis]}: a tile must keep at least "
                                 f"{g} output voxels; the smallest tile for this network is "
                                 f"{geometry_for_step(model, g, axis, contexts[axis])[0]}")
            steps.append(step)
    # a tile larger than the volume: shrink it to just cover the volume (the result is the same)
    return [plan_axis(model, size, min(step, -(-extent // g) * g), axis=axis, context=context,
                      **({"start": start, "stop": stop} if axis == 0 else {}))
            for axis, (size, extent, step, g, context)
            in enumerate(zip(shape, extents, steps, model.pool_factors, contexts))]


def _iter_resampled(model: UNet, data, volume: Volume, factors, options: PredictOptions, *, name: str, out):
    """Predict ``data`` resampled by ``factors`` (z, y, x) to the model's voxel grid, and bring the
    probabilities back to the input's grid (linear): ``options.planes`` are predicted from the
    resampled planes that lie around them. The resampled stack is held in memory."""
    normalize = options.normalize
    if normalize is True:  # the percentiles of the stack itself, not of its resampled copy
        lows, highs = source_normalization(model, volume, True)
        normalize = False if lows is None else (lows, highs)
    n_z = volume.shape[0]
    start, stop, _ = _z_range(options.planes, n_z, 1)
    spatial = [ax for ax in volume.axes if ax != "C"]
    out_shape = (model.config.n_classes, *(stop - start if ax == "Z" else n
                                           for ax, n in zip(volume.axes, data.shape) if ax != "C"))
    check_allocation(4 * int(np.prod(data.shape)) * float(np.prod(factors)), "the resampled stack",
                     hint="predict without pixel_size, or resample the stack yourself")
    if out is None:
        check_allocation(4 * int(np.prod(out_shape)), "the probabilities", hint="pass out= a zarr array")
    out = check_out(out, out_shape)
    resampled = resample_image(data, volume.axes, factors)
    n_r = resampled.shape[volume.axes.index("Z")]
    # each plane asked for lies between two resampled planes (skimage's grid: pixel centres align)
    at = np.clip((np.arange(start, stop) + 0.5) * n_r / n_z - 0.5, 0, n_r - 1)
    lower = np.floor(at).astype(int)
    upper = np.minimum(lower + 1, n_r - 1)
    first, last = int(lower.min()), int(upper.max()) + 1
    logger.info("resampled %s by %s to the model's voxel size: %s", tuple(data.shape),
                " x ".join(f"{f:.3g}" for f in factors), tuple(resampled.shape))
    probabilities = yield from iter_predict_volumes(
        model, resampled, options.but(normalize=normalize, pixel_size=None, planes=(first, last)),
        axes=volume.axes, name=name)
    z = 1 + spatial.index("Z")
    shape = [1] * probabilities.ndim
    shape[z] = -1
    weight = (at - lower).astype(np.float32).reshape(shape)
    planes = np.take(probabilities, lower - first, axis=z) * (1 - weight) \
        + np.take(probabilities, upper - first, axis=z) * weight
    del probabilities
    out[...] = resample_probabilities(planes, out_shape[-2:])
    return out


def iter_predict_volumes(
    model: UNet, data, options: PredictOptions, *, axes: str, name: str = "data", out=None,
) -> Generator[tuple[int, int], None, Any]:
    """Every volume of a stack by a 3D network, with one ``(done, total)`` tile count.

    ``axes`` contains Z right before Y, X ("ZYX", "CZYX", "ZCYX", "TZYX", "TZCYX"); returns the
    float32 probabilities ``(n_classes, *non-channel axes)`` (or ``out``). The normalization
    percentiles are those of the whole stack. A stack whose ``options.pixel_size`` ((z, y, x) or
    (y, x)) differs from the model's voxel size is resampled to the model's grid and its
    probabilities back to the stack's. The options: :func:`iter_predict_volume`.
    """
    _check_3d(model)
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {options.precision!r}")
    tta = check_tta(options.tta)
    data = as_image_array(data, name)
    volume = make_volume(data, axes, model, name)
    factors = volume_resample_factors(options.pixel_size, model)
    if factors is not None:
        return (yield from _iter_resampled(model, data, volume, factors, options, name=name, out=out))
    dev = select_device(options.device)
    dtype = volume_precision(options.precision, dev)
    start, stop, skip = _z_range(options.planes, volume.shape[0], model.pool_factors[0])
    plans = _plan(model, volume.shape, options.tile_shape, dev, dtype, tile_contexts(model, options.context),
                  (start, stop))
    n_tiles = int(np.prod([p.count for p in plans])) * max(int(np.prod(volume.plane_shape)), 1)
    batch_size = tile_batch_size(model, [p.tile for p in plans], n_tiles, dev, dtype, options.batch_size,
                                 asked=options.tile_shape is not None)
    spatial = [ax for ax in volume.axes if ax != "C"]
    out_shape = (model.config.n_classes, *(stop - start - skip if ax == "Z" else n
                                           for ax, n in zip(volume.axes, data.shape) if ax != "C"))
    if out is None:
        check_allocation(4 * int(np.prod(out_shape)), f"the probabilities of {name} {tuple(data.shape)}",
                         hint="pass out= a zarr array to write them to disk")
    out = check_out(out, out_shape)
    # the planes the pooling grid adds before those asked for are predicted into a scratch array
    target = out if not skip else np.empty((out_shape[0], *(stop - start if ax == "Z" else n for ax, n
                                                            in zip(spatial, out_shape[1:]))), np.float32)
    norm = source_normalization(model, volume, options.normalize)
    logger.debug("predicting %s %s with tiles %s (keeping %s), %d tile(s), batch %d, %s, %s", name,
                 tuple(data.shape), [p.tile for p in plans], [p.step for p in plans], n_tiles, batch_size, dev,
                 dtype or "fp32")
    net = prepare_model(model, dev)
    was_training = net.training
    net.eval()
    try:
        engine = TileEngine(net, volume, target, *plans, device=dev, dtype=dtype, batch_size=int(batch_size),
                            norm=norm, tta=tta)
        peak = batch_bytes(model, [p.tile for p in plans], dtype, batch_size)
        with reuse_freed_memory(dev, peak):  # large tiles go without: the heap would outgrow the budget
            yield from engine.run()
    finally:
        net.train(was_training)
    if skip:
        out[...] = target[(slice(None), *(slice(skip, None) if ax == "Z" else slice(None) for ax in spatial))]
    return out


def iter_predict_volume(
    model: UNet, volume, *, tile_shape: Sequence[int] | int | None = None, batch_size: int | None = None,
    device: str | torch.device | None = None, out=None, normalize: bool | tuple = True, precision: str = "auto",
    tta: int | str = 1, context: str = "full", planes: tuple[int, int] | None = None,
) -> Generator[tuple[int, int], None, Any]:
    """Class probabilities of one volume by a 3D network, by seamless overlap-tile prediction.

    A generator yielding ``(done, total)`` tiles: ``probs = yield from iter_predict_volume(...)``
    (or :func:`napari_unet.predict_tiled`, which comes here for a 3D network); closing it cancels
    at the next tile batch.

    Parameters
    ----------
    volume : array-like
        ``(Z, Y, X)`` or ``(C, Z, Y, X)``: numpy, zarr or dask, read tile by tile.
    tile_shape : (int, int, int) or int, optional
        Network input tile (Z, Y, X), rounded up to a valid size; None: :func:`choose_volume_tile`.
    batch_size, device, out, normalize, tta
        As in :func:`napari_unet.predict_tiled` (``out``: ``(n_classes, Z, Y, X)``; ``tta``: views
        flipped in Y and X).
    precision : {"auto", "fp32", "bf16", "fp16"}
        "auto": fp32 on the CPU, bf16 (else fp16) autocast on CUDA.
    context : {"full", "preview"}
        "full": seamless; "preview": tiles with a third of the network's context (see the module).
    planes : (int, int), optional
        ``(start, stop)``: only these planes, what the whole volume gives them (see the module);
        the result is ``(n_classes, stop - start, Y, X)``.

    Returns
    -------
    probabilities : np.ndarray or ``out``
        float32 softmax probabilities ``(n_classes, Z, Y, X)``.
    """
    _check_3d(model)
    volume = as_image_array(volume, "volume")
    options = PredictOptions(tile_shape=tile_shape, batch_size=batch_size, device=device, normalize=normalize,
                             precision=precision, tta=tta, context=context, planes=planes)
    return (yield from iter_predict_volumes(model, volume, options, axes=volume_axes(volume, model), name="volume",
                                            out=out))
