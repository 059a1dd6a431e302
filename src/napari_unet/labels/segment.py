"""Labels as Predict makes them, one way for every entry point.

The Predict and Batch widgets, the command line, the demo and the benchmarks segment an image the
same way: its probabilities (overlap-tile, ``tta`` flipped views averaged), then
:func:`~napari_unet.to_labels` with the options the model implies (:func:`segment_options`), then,
for instances of planes, the half-scale pass for cells much larger than the painted ones
(:mod:`napari_unet.labels.large_cells`).

Examples
--------
>>> from napari_unet import UNet
>>> model = UNet(depth=2, base_channels=4).eval()
>>> image = np.random.default_rng(0).random((64, 64), dtype=np.float32)
>>> probabilities, labels = segment(model, image, axes="YX")
>>> probabilities.shape, labels.shape, labels.dtype
((2, 64, 64), (64, 64), dtype('int32'))
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np

from ..common.pixel_size import check_voxel_size, voxel_spacing
from ..common.progress import Progress, drive, part
from ..predict.options import PredictOptions
from .blocks import to_labels_in_blocks
from .instances import label_options
from .large_cells import applies, half_scale_wanted, iter_large_cells
from .options import LabelOptions

__all__ = ["segment_options", "iter_segment", "segment", "LARGE_CELLS_SHARE"]

#: the half-scale pass's share of a segmentation's progress (it predicts a quarter of the tiles)
LARGE_CELLS_SHARE = 0.2


def segment_options(model, mode: str | None = None, *, cell_diameter: float | None = None, space: dict | None = None,
                    three_d: bool = False, axes: str = "") -> LabelOptions:
    """:func:`~napari_unet.to_labels` options for one image: :func:`~napari_unet.label_options`
    of the model (``mode``: given or the model's), the cell diameter in the image's pixels
    (``space``: its pixel sizes ``{"z", "y", "x"}`` in micrometres, or None), ``cell_diameter``
    (pixels) instead of the model's when given, and one id per 3D object of a z-stack (``axes``
    with a ``Z``) with ``three_d`` (voxel spacing from ``space``)."""
    options = LabelOptions.of(label_options(model, mode, pixel_size=(space["y"], space["x"]) if space else None))
    if cell_diameter and options.mode == "instances":
        options = options.but(cell_diameter=float(cell_diameter))
    if three_d and "Z" in axes and options.mode == "instances":
        options = options.but(three_d=True, spacing=voxel_spacing(space))
    return options


def iter_segment(model, data, *, axes: str, options: LabelOptions | dict | None = None, device=None, pixel_size=None,
                 normalize: bool | tuple = True, tta: int | str = 1, large_cells: bool = True,
                 keep_probabilities: bool = True,
                 **predict_kwargs) -> Generator[tuple[int, int], None, Any]:
    """Generator: yields ``(permille, 1000)`` steps; returns ``(probabilities, labels)`` of ``data``.

    ``data``: an image or stack with ``axes`` (channels first, as
    :func:`~napari_unet.predict_stack` takes them). ``options``: of
    :func:`~napari_unet.to_labels`, a :class:`~napari_unet.labels.options.LabelOptions` or a dict
    (default :func:`~napari_unet.label_options` of the model, the cell diameter in the pixels of
    ``pixel_size``; a 3D network's labels are 3D objects, ``three_d=True`` with the voxel size of
    ``pixel_size`` (z, y, x), else the one it was trained on).
    ``large_cells``: the half-scale pass, where it applies (instances of planes with a known cell
    diameter). ``device``, ``pixel_size``, ``normalize`` (e.g. a whole stack's range for one of its
    planes) and ``tta``: as :func:`~napari_unet.predict_stack` takes them, for both passes;
    ``predict_kwargs`` (``tile_shape``, ``batch_size``, ``precision``): for the full-scale prediction.
    ``keep_probabilities=False`` frees them once the labels are made (a large stack's memory) and
    returns ``(None, labels)``. Closing the generator stops the work.
    """
    from ..predict.sources import as_image_array, make_source, source_normalization
    from ..predict.tiling import iter_predict_with

    # the image checked once, its normalization settled once: both passes read them
    data = as_image_array(data, "data")
    if normalize is True:
        lows, highs = source_normalization(model, make_source(data, axes, model, "data"), True)
        normalize = False if lows is None else (lows, highs)
    size = check_voxel_size(pixel_size)  # the labels are made on the data's grid, of this size
    options = LabelOptions.of(label_options(model, pixel_size=size[-2:] if size else None) if options is None
                              else options)
    if getattr(model.config, "spatial_dims", 2) == 3 and options.mode == "instances" \
            and options.three_d is None:  # a 3D network: one id per 3D object, of the data's voxel or its own
        voxel = size if size is not None and len(size) == 3 else (getattr(model, "metadata", None) or {}).get("voxel_size")
        options = options.but(three_d=True, spacing=tuple(float(v) for v in voxel) if voxel else (1.0, 1.0, 1.0))
    full = PredictOptions(device=device, pixel_size=pixel_size, normalize=normalize, tta=tta, **predict_kwargs)
    share = 1.0 - LARGE_CELLS_SHARE if large_cells and applies(options) else 1.0
    probabilities = yield from part(iter_predict_with(model, data, full, axes=axes), 0.0, share)
    labels = to_labels_in_blocks(probabilities, options)  # a large plane on every core
    # the planes that show a cell much larger than the painted ones (the others skip the half-scale pass)
    wanted = half_scale_wanted(probabilities, labels, options) if share < 1.0 else None
    if not keep_probabilities:
        probabilities = None
    if share < 1.0:  # the half-scale pass: the full scale's device, pixel size, normalization and views
        half = PredictOptions(device=device, pixel_size=pixel_size, normalize=normalize, tta=tta)
        labels = yield from part(iter_large_cells(model, data, labels, options, half, axes=axes, planes=wanted),
                                 share, 1.0 - share)
    return probabilities, labels


def segment(model, data, *, axes: str, progress: Progress | None = None, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """:func:`iter_segment` in one call (``progress(permille, 1000)`` after each step):
    ``(probabilities, labels)``."""
    return drive(iter_segment(model, data, axes=axes, **kwargs), progress)
