"""Overlap-tile prediction: seamless, bounded-memory segmentation of arbitrarily large images.

How it works (Ronneberger et al. 2015, Fig. 2):

* The image is extrapolated at its borders by mirroring, so border pixels get a context.
* Output tiles of ``step`` pixels (a multiple of the pooling factor ``g = 2**depth``) cover the
  image; each tile's input is its output window plus the network's context. Every tile input
  starts at ``k * g - context`` in image coordinates, i.e. on one common pooling grid, so every
  max-pool sees the same 2x2 windows whatever the tile shape: an output pixel gets the same value
  from any tile that contains it, and the result is **seamless** (identical, up to float rounding,
  for any two tile shapes or batch sizes, including a tile covering the whole image).
* ``padding="valid"`` networks (the paper's) compute exactly what fits: each tile's output is the
  network output itself (a valid network's outputs are ``g * k + c`` pixels, so neighbouring tiles
  recompute ``c`` pixels, 4 for the paper net).
* ``padding="same"`` networks are run with a context margin of ``model.margin()`` rounded up to a
  multiple of ``g`` (92 -> 96 pixels for depth 4) on every side of the kept window. That margin
  covers the receptive field, so the zero padding inside each tile never reaches a kept pixel and
  the result is seamless too. A smaller margin would only be an approximation.

Tiles are read one by one from numpy, memmap, zarr or dask arrays (the input is never loaded
whole), normalized with the per-image percentiles stored in ``model.metadata["normalization"]``,
and written into ``out`` (which may be a zarr array or a memmap), so images larger than RAM work.
A background thread reads and prepares the next batch of tiles, and another writes finished ones,
while the network runs.

Precision: ``precision="auto"`` uses bf16 autocast + channels_last on CPUs with native bf16
(AVX512-BF16 or AMX), bf16 (or fp16) autocast on CUDA, fp32 otherwise; argmax agreement with
fp32 stays above 99.9% (tested). The seamless guarantee of 1e-4 is for ``precision="fp32"``;
with reduced precision two tile shapes agree to the rounding of that precision.
"""

from __future__ import annotations

import logging
from typing import Any, Generator, Sequence

import numpy as np
import torch

from ..common.devices import PRECISIONS, resolve_precision, select_device
from ..common.memory import check_allocation, reuse_freed_memory
from ..common.pixel_size import model_pixel_size, resample_factors, resample_image, resample_probabilities
from ..common.progress import Progress, drive
from ..model.fit import image_axes
from ..model.unet import UNet
from .engine import TileEngine, check_out, prepare_model
from .options import PredictOptions
from .plan import plan_tiles, tile_batch_size
from .sources import Source, as_image_array, make_source, source_normalization
from .views import check_tta
from .volume import iter_predict_volumes, volume_axes

__all__ = [
    "predict_tiled",
    "predict_stack",
    "predict_block",
    "iter_predict_tiled",
    "iter_predict_stack",
    "normalization_range",
    "iter_predict_with",
]

logger = logging.getLogger(__name__)


def normalization_range(model: UNet, data, *, axes: str | None = None):
    """The ``(lows, highs)`` intensities that ``model`` normalizes ``data`` with.

    Percentiles of the whole image or stack (per channel), as :func:`predict_stack` uses them;
    ``None`` when the model stores no normalization. Pass the result as ``normalize=`` to
    predict one plane of a stack exactly as within the whole stack.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_unet import UNet
    >>> net = UNet(depth=1, base_channels=2); net.metadata = {"normalization": {"kind": "percentile", "low": 0, "high": 100}}
    >>> normalization_range(net, np.arange(24).reshape(2, 3, 4), axes="ZYX")
    (array([0.]), array([23.]))
    """
    data = as_image_array(data, "data")
    if axes is None:
        axes = _axes_of(data, model)
    lows, highs = source_normalization(model, make_source(data, axes, model, "data"), True)
    return None if lows is None else (lows, highs)


def _axes_of(image, model: UNet) -> str:
    """The axes of one image ("YX", "CYX") or, for a 3D network, of one volume ("ZYX", "CZYX")."""
    return volume_axes(image, model) if model.spatial_dims == 3 else image_axes(image, model)


def iter_predict_with(
    model, data, options: PredictOptions, *, axes: str, name: str = "data", out=None, block=None,
) -> Generator[tuple[int, int], None, Any]:
    """The prediction every function of this module makes: ``data`` (an array, axes ``axes``)
    with ``options``, written into ``out``; ``block = (plane, ys, xs)`` predicts one block
    (:func:`predict_block`). Yields ``(done, total)`` tiles, returns the probabilities."""
    if not isinstance(model, UNet):
        raise TypeError(f"model must be a napari_unet.UNet, got {type(model).__name__}")
    if model.spatial_dims == 3 and block is None:  # a 3D network: volume by volume (predict/volume.py)
        return (yield from iter_predict_volumes(model, data, options, axes=axes, name=name, out=out))
    if model.spatial_dims == 3:
        raise ValueError("predict_block takes a 2D network; predict a 3D network's stack with predict_stack")
    if options.context != "full":
        raise ValueError(f"context={options.context!r} is for 3D networks; a plane is always predicted with the "
                         "network's whole context")
    if options.planes is not None:
        raise ValueError(f"planes={options.planes!r} is for 3D networks; a 2D network predicts the planes you give it")
    if options.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {options.precision!r}")
    options = options.but(tta=check_tta(options.tta))
    source = make_source(data, axes, model, name)
    factors = resample_factors(options.pixel_size, model_pixel_size(model)) if block is None else None
    if factors is not None:
        return (yield from _iter_resampled(model, data, axes, factors, source, options, name=name, out=out))
    dev = select_device(options.device)
    dtype = resolve_precision(options.precision, dev)
    plane, window = _check_block(block, source) if block is not None else (None, None)
    plan_y, plan_x = plan_tiles(model, source.height, source.width, options.tile_shape, dev, options.precision, window)
    n_planes = 1 if block is not None else max(int(np.prod(source.plane_shape)), 1)
    n_tiles = plan_y.count * plan_x.count * n_planes
    batch_size = tile_batch_size(model, (plan_y.tile, plan_x.tile), n_tiles, dev, dtype, options.batch_size,
                                 asked=options.tile_shape is not None)
    if block is None:
        out_shape = (model.config.n_classes, *source.plane_shape, source.height, source.width)
    else:
        out_shape = (model.config.n_classes, plan_y.extent, plan_x.extent)
    if out is None:
        check_allocation(4 * int(np.prod(out_shape)), f"the probabilities of {name} {tuple(data.shape)}",
                         hint="pass out= a zarr array or a memmap to write them to disk")
    out = check_out(out, out_shape)
    norm = source_normalization(model, source, options.normalize)
    logger.debug(
        "predicting %s %s with tiles %dx%d (keeping %dx%d), %d tile(s), batch %d, %s, %s",
        name, tuple(data.shape), plan_y.tile, plan_x.tile, plan_y.step, plan_x.step, n_tiles,
        batch_size, dev, dtype or "fp32",
    )
    net = prepare_model(model, dev)
    was_training = net.training
    net.eval()
    try:
        # inference mode is entered around each forward, not across the yields: it is thread-local
        # state that must not leak into the caller's code between progress events
        engine = TileEngine(
            net, source, out, plan_y, plan_x, device=dev, dtype=dtype, batch_size=int(batch_size), norm=norm,
            plane=plane, tta=options.tta,
        )
        with reuse_freed_memory(dev):
            yield from engine.run()
    finally:
        net.train(was_training)
    return out


def _iter_resampled(model, data, axes, factors, source: Source, options: PredictOptions, *, name: str, out):
    """Predict ``data`` resampled by ``factors`` (to the model's pixel size) and resample the
    probabilities back to the input's grid (the resampled stack is held in memory)."""
    normalize = options.normalize
    if normalize is True:  # the percentiles of the image itself, not of its resampled copy
        normalize = source_normalization(model, source, True)
        normalize = False if normalize[0] is None else normalize
    out_shape = (model.config.n_classes, *source.plane_shape, source.height, source.width)
    check_allocation(4 * int(np.prod(data.shape)) * factors[0] * factors[1], "the resampled image",
                     hint="predict without pixel_size, or resample the image yourself")
    if out is None:
        check_allocation(4 * int(np.prod(out_shape)), "the probabilities", hint="pass out= a zarr array or a memmap")
    out = check_out(out, out_shape)
    resampled = resample_image(data, axes, factors)
    logger.info("resampled %s by %.3g x %.3g to the model's pixel size: %s", tuple(data.shape), *factors,
                tuple(resampled.shape))
    probabilities = yield from iter_predict_with(model, resampled, options.but(normalize=normalize, pixel_size=None),
                                                 axes=axes, name=name)
    for plane in np.ndindex(*source.plane_shape):
        out[(slice(None), *plane)] = resample_probabilities(probabilities[(slice(None), *plane)],
                                                            (source.height, source.width))
    return out


def _check_block(block, source: Source):
    """``block = (plane, ys, xs)``: a plane index over the non-channel, non-YX axes and two slices."""
    try:
        plane, ys, xs = block
        plane = tuple(int(i) for i in plane)
        ys, xs = (slice(*(int(v) for v in sl.indices(size)[:2])) for sl, size in ((ys, source.height), (xs, source.width)))
    except (TypeError, ValueError, AttributeError):
        raise TypeError(f"block must be (plane, ys, xs) with a tuple of ints and two slices, got {block!r}") from None
    if len(plane) != len(source.plane_shape) or any(not 0 <= i < n for i, n in zip(plane, source.plane_shape)):
        raise ValueError(f"block plane {plane} is not a plane of a stack with planes {source.plane_shape}")
    if ys.stop <= ys.start or xs.stop <= xs.start:
        raise ValueError(f"block {ys.start}:{ys.stop}, {xs.start}:{xs.stop} is empty")
    return plane, (ys, xs)


def iter_predict_tiled(
    model: UNet, image, *, tile_shape: Sequence[int] | int | None = None, batch_size: int | None = None,
    device: str | torch.device | None = None, out=None, normalize: bool | tuple = True, precision: str = "auto",
    pixel_size=None, tta: int | str = 1,
) -> Generator[tuple[int, int], None, Any]:
    """Generator form of :func:`predict_tiled`: yields ``(done, total)`` tiles, returns the result.

    ``probabilities = yield from iter_predict_tiled(model, image)``; closing the generator cancels
    the prediction at the next tile batch.
    """
    image = as_image_array(image, "image")
    axes = _axes_of(image, model) if isinstance(model, UNet) else "YX"
    options = PredictOptions(tile_shape=tile_shape, batch_size=batch_size, device=device, normalize=normalize,
                             precision=precision, pixel_size=pixel_size, tta=tta)
    return (yield from iter_predict_with(model, image, options, axes=axes, name="image", out=out))


def predict_tiled(
    model: UNet, image, *, tile_shape: Sequence[int] | int | None = None, batch_size: int | None = None,
    device: str | torch.device | None = None, out=None, progress: Progress | None = None,
    normalize: bool | tuple = True, precision: str = "auto", pixel_size=None, tta: int | str = 1,
):
    """Class probabilities of one image plane, by seamless overlap-tile prediction.

    A 3D network (``model.spatial_dims == 3``) takes a volume ``(Z, Y, X)`` or ``(C, Z, Y, X)``
    instead, with ``tile_shape`` (Z, Y, X), and returns ``(n_classes, Z, Y, X)``
    (:func:`napari_unet.predict.volume.iter_predict_volume`; ``pixel_size`` (z, y, x) or (y, x)).

    Parameters
    ----------
    model : UNet
        The network (its ``metadata["normalization"]``, when present, normalizes the image).
    image : array-like
        ``(Y, X)`` or ``(C, Y, X)``: numpy, memmap, zarr or dask; read tile by tile.
    tile_shape : (int, int) or int, optional
        Network input tile (Y, X). Rounded up to a valid size; None picks the largest tile that
        fits the memory budget (see :func:`choose_tile_shape`).
    batch_size : int, optional
        Tiles per forward pass (None: 1 on the CPU, what fits on a GPU).
    device : str or torch.device, optional
        "cpu", "cuda", "mps"; None picks CUDA, then MPS, then the CPU.
    out : array-like, optional
        Where to write the result, shape ``(n_classes, Y, X)``, e.g. a zarr array or a memmap for
        images larger than RAM.
    progress : callable, optional
        ``progress(done, total)`` after each batch of tiles.
    normalize : bool or (lows, highs)
        True: apply the model's stored normalization, its percentiles computed on this image.
        False: none (the image is already normalized). A ``(lows, highs)`` pair (one value per
        channel): map these intensities to 0 and 1, e.g. the percentiles of the whole stack a
        plane comes from (:func:`normalization_range`), so the plane is predicted exactly as
        it is within :func:`predict_stack`.
    precision : {"auto", "fp32", "bf16", "fp16"}
        Arithmetic; "auto" picks the fastest that keeps the argmax (see the module notes).
    pixel_size : float or (float, float), optional
        Micrometres per pixel (y, x) of the image (a volume: per voxel (z, y, x), or (y, x) to
        leave Z as it is). When the model knows its own (``model.metadata["pixel_size"]``, a 3D
        network's ``"voxel_size"``) and they differ by more than 5 %, the image is resampled to
        the model's grid, predicted, and the probabilities resampled back: the result keeps the
        image's shape. None: predicted as it is.
    tta : {1, 2, 4, "auto"}
        Test-time augmentation: the number of flipped views of each tile whose probabilities are
        averaged (1: none; 2: and its left-right mirror; 4: every flip along Y and X; "auto": two,
        and four on the images whose first two disagree, the plugin's default). Steadier
        probabilities on noisy images, at that many times the computation; still seamless and
        exact block by block (:mod:`napari_unet.predict.engine`; "auto" is decided per image,
        so :func:`predict_block` does not take it).

    Returns
    -------
    probabilities : np.ndarray or ``out``
        float32 softmax probabilities ``(n_classes, Y, X)``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_unet import UNet
    >>> net = UNet(depth=2, base_channels=4)
    >>> predict_tiled(net, np.zeros((50, 70), np.float32), precision="fp32").shape
    (2, 50, 70)
    """
    image = as_image_array(image, "image")
    axes = _axes_of(image, model) if isinstance(model, UNet) else "YX"
    options = PredictOptions(tile_shape=tile_shape, batch_size=batch_size, device=device, normalize=normalize,
                             precision=precision, pixel_size=pixel_size, tta=tta)
    return drive(iter_predict_with(model, image, options, axes=axes, name="image", out=out), progress)


def iter_predict_stack(
    model: UNet, data, *, axes: str, tile_shape: Sequence[int] | int | None = None, batch_size: int | None = None,
    device: str | torch.device | None = None, out=None, normalize: bool | tuple = True, precision: str = "auto",
    pixel_size=None, tta: int | str = 1,
) -> Generator[tuple[int, int], None, Any]:
    """Generator form of :func:`predict_stack`: yields ``(done, total)`` tiles over all planes."""
    options = PredictOptions(tile_shape=tile_shape, batch_size=batch_size, device=device, normalize=normalize,
                             precision=precision, pixel_size=pixel_size, tta=tta)
    return (yield from iter_predict_with(model, as_image_array(data, "data"), options, axes=axes, out=out))


def predict_stack(
    model: UNet, data, *, axes: str, tile_shape: Sequence[int] | int | None = None, batch_size: int | None = None,
    device: str | torch.device | None = None, out=None, progress: Progress | None = None,
    normalize: bool | tuple = True, precision: str = "auto", pixel_size=None, tta: int | str = 1,
):
    """Class probabilities of a stack, predicted plane by plane with one progress total.

    Parameters
    ----------
    data : array-like
        An image or stack whose axes are named by ``axes``.
    axes : str
        Letters from "TZCYX", ending with Y, X among the non-channel axes: "YX", "CYX", "YXC"
        (RGB), "ZYX", "TYX", "TZYX", "ZCYX", "TZCYX", ...
    out : array-like, optional
        ``(n_classes, *non-channel axes)``, e.g. ``(n_classes, T, Z, Y, X)`` for "TZCYX".

    The remaining parameters are those of :func:`predict_tiled`. The normalization percentiles
    are computed once on the whole stack (per channel), so all planes are normalized alike. A 3D
    network predicts volume by volume: ``axes`` then has Z right before Y, X ("ZYX", "TZYX", "ZCYX").

    Returns
    -------
    probabilities : np.ndarray or ``out``
        float32 ``(n_classes, *non-channel axes)``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_unet import UNet
    >>> net = UNet(depth=2, base_channels=4)
    >>> predict_stack(net, np.zeros((3, 40, 40), np.uint8), axes="ZYX", precision="fp32").shape
    (2, 3, 40, 40)
    """
    options = PredictOptions(tile_shape=tile_shape, batch_size=batch_size, device=device, normalize=normalize,
                             precision=precision, pixel_size=pixel_size, tta=tta)
    return drive(iter_predict_with(model, as_image_array(data, "data"), options, axes=axes, out=out), progress)


def predict_block(
    model: UNet, data, *, axes: str, block, tile_shape: Sequence[int] | int | None = None,
    batch_size: int | None = None, device: str | torch.device | None = None, normalize: bool | tuple = True,
    precision: str = "auto", tta: int | str = 1,
) -> np.ndarray:
    """The probabilities of one block of a stack, exactly as :func:`predict_stack` computes them there.

    ``block = (plane, ys, xs)``: ``plane`` indexes the non-channel axes before Y, X (``()`` for
    an image), ``ys`` and ``xs`` are slices whose starts are multiples of ``model.pool_factor``.
    The block reads its own context (mirrored at the image borders) from ``data``, which stays
    lazy (zarr, dask), and its tiles lie on the pooling grid of the whole image, so blocks put
    side by side equal the whole-image result (up to float rounding): the building block of
    :func:`napari_unet.predict_distributed`. Pass ``normalize=(lows, highs)`` of the whole
    stack (:func:`normalization_range`); True would use the percentiles of ``data`` too.

    Returns
    -------
    probabilities : np.ndarray
        float32 ``(n_classes, len(ys), len(xs))``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_unet import UNet
    >>> net = UNet(depth=2, base_channels=4)
    >>> image = np.random.default_rng(0).random((60, 50), dtype=np.float32)
    >>> whole = predict_tiled(net, image, precision="fp32")
    >>> part = predict_block(net, image, axes="YX", block=((), slice(16, 48), slice(0, 50)), precision="fp32")
    >>> bool(np.abs(part - whole[:, 16:48]).max() < 1e-5)
    True
    """
    options = PredictOptions(tile_shape=tile_shape, batch_size=batch_size, device=device, normalize=normalize,
                             precision=precision, tta=tta)
    return drive(iter_predict_with(model, as_image_array(data, "data"), options, axes=axes, block=block), None)
