"""A second look at half scale, for cells much larger than the painted ones.

A network learns the cell size it was shown. Painted only on small cells, it sees a cell three or
four times their diameter as a ring of edges with fragments inside (``benchmarks/README.md``,
"mixed sizes"). At half scale the same cell looks like a painted one, so the image is predicted a
second time, downscaled by 2, and its objects replace the full-scale labels where they are much
larger than a typical painted cell *and* the full-scale labels cover them poorly, or cut them into
large pieces along lines the half-scale prediction holds to be inside a cell (a textured inside
the full scale was unsure of). Cells of the painted size keep their full-scale labels, so images
without unusually large cells almost always get the same labels as without this pass (the
constants below were chosen on the quality suite: ``benchmarks/README.md``).

The pass runs only on the planes whose full-scale result shows something as large as such a
cell (:func:`half_scale_wanted`): an object, or a region the network was unsure of and left
unlabelled, at least :data:`LARGE_CELL_DIAMETERS` typical cells wide. A plane of cells of the
painted size skips it: the network's second pass, its labels and the fuse.

Examples
--------
>>> import numpy as np
>>> from napari_unet import to_labels
>>> p = np.zeros((2, 40, 40), np.float32); p[0] = 1
>>> p[:, 4:36, 4:36] = [[[0.2]], [[0.8]]]          # one large cell, 32 px wide
>>> ring = p.copy(); ring[:, 8:32, 8:32] = [[[0.9]], [[0.1]]]   # full scale: only its rim
>>> half = p[:, ::2, ::2]                          # half scale: the whole cell
>>> full = to_labels(ring, min_size=1)
>>> int((full > 0).sum()) < 32 * 32
True
>>> fused = add_large_cells(full, half, cell_diameter=8.0)
>>> int((fused > 0).sum()), int(fused.max())
(1024, 1)
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np

from ..predict.options import PredictOptions
from .blocks import to_labels_in_blocks
from .instances import UNSURE_P, renumbered, split_height
from .options import LabelOptions

__all__ = ["half_scale", "iter_predict_half_scale", "predict_half_scale", "add_large_cells", "fuse_large_cells",
           "iter_large_cells", "applies", "half_scale_wanted",
           "LARGE_CELL_DIAMETERS", "LARGE_CELL_COVERAGE", "LARGE_CELL_CUT_SUPPORT", "LARGE_CELL_PIECES",
           "LARGE_PIECE_CELLS"]

#: an object of the half-scale labels is a large cell when its equivalent diameter is at least
#: this many typical cell diameters (the painted cells' median the model keeps)
LARGE_CELL_DIAMETERS = 2.25
#: ... and it replaces the full-scale labels only where these cover less than this fraction of it
#: (a ring with fragments); a clump the full scale split correctly covers it almost completely
LARGE_CELL_COVERAGE = 0.7
#: ... or where, however well they cover it, they cut it into at least LARGE_CELL_PIECES pieces,
#: the largest at least LARGE_PIECE_CELLS typical cells in area (so not a clump of cells of the
#: painted size, nor a pair of larger cells), along lines the half-scale prediction holds to be
#: inside a cell: mean half-scale cell probability on the cuts at least LARGE_CELL_CUT_SUPPORT
#: (a clump's cuts follow the gaps between its cells, where that probability dips)
LARGE_CELL_CUT_SUPPORT = 0.7
LARGE_CELL_PIECES = 3
LARGE_PIECE_CELLS = 3.0
#: the cuts are looked for this many pixels inside the object's outline
CUT_MARGIN = 3


def half_scale(data) -> np.ndarray:
    """``data`` (``(..., Y, X)``) downscaled by 2 in Y and X, anti-aliased, as float32."""
    from skimage.transform import resize

    data = np.asarray(data)
    shape = (*data.shape[:-2], max(1, (data.shape[-2] + 1) // 2), max(1, (data.shape[-1] + 1) // 2))
    return resize(data.astype(np.float32, copy=False), shape, order=1, anti_aliasing=True,
                  preserve_range=True).astype(np.float32)


def iter_predict_half_scale(model, data, *, axes: str, device=None, pixel_size=None, precision: str = "auto",
                            normalize=None, tta: int | str = 1) -> Generator[tuple[int, int], None, Any]:
    """Generator: yields ``(done, total)`` tiles; returns the probabilities of ``data`` downscaled
    by 2, ``(n_classes, ..., ceil(Y/2), ceil(X/2))``.

    ``data``: an image or stack with ``axes`` (channels first, as :func:`~napari_unet.predict_stack`
    takes them). It is normalized with the full-scale data's percentiles (or ``normalize``, as in
    :func:`~napari_unet.predict_tiled`: e.g. the whole stack's range for one plane). ``pixel_size``: the
    full-scale image's (micrometres, y and x), when the model resamples to its own pixel size:
    the half-scale image is then resampled by the same factor and so is seen at half the model's
    grid. ``tta``: flipped views averaged, as in :func:`~napari_unet.predict_tiled`.
    """
    options = PredictOptions(device=device, pixel_size=pixel_size, precision=precision, normalize=normalize, tta=tta)
    return (yield from _iter_half_scale(model, data, options, axes))


def _iter_half_scale(model, data, options: PredictOptions, axes: str) -> Generator[tuple[int, int], None, Any]:
    """:func:`iter_predict_half_scale` with ``options`` (``normalize`` None: the full scale's range)."""
    from ..predict.tiling import iter_predict_with, normalization_range

    if options.normalize is None:
        options = options.but(normalize=normalization_range(model, data, axes=axes) or True)
    return (yield from iter_predict_with(model, half_scale(data), options, axes=axes))


def predict_half_scale(model, data, *, axes: str | None = None, device=None, pixel_size=None, progress=None,
                       **kwargs) -> np.ndarray:
    """:func:`iter_predict_half_scale` in one call (``axes``: default from the data and the model;
    ``progress(done, total)`` after each tile batch): the ``half_probabilities`` of
    :func:`add_large_cells`, e.g.
    ``add_large_cells(to_labels(p, **options), predict_half_scale(model, image), **options)``."""
    from ..model.fit import image_axes
    from ..common.progress import drive

    axes = axes or image_axes(np.asarray(data) if not hasattr(data, "shape") else data, model)
    return drive(iter_predict_half_scale(model, data, axes=axes, device=device, pixel_size=pixel_size, **kwargs),
                 progress)


def _upsampled(half: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """The window ``box`` of a half-scale plane (labels or probabilities) on the full grid (each
    full pixel takes its half-scale pixel's value)."""
    ys = np.minimum(np.arange(box[0].start, box[0].stop) // 2, half.shape[0] - 1)
    xs = np.minimum(np.arange(box[1].start, box[1].stop) // 2, half.shape[1] - 1)
    return half[np.ix_(ys, xs)]


def _fuse_plane(full: np.ndarray, half: np.ndarray, cell_diameter: float, half_cell: np.ndarray) -> np.ndarray:
    """Replace the full-scale labels of one plane by the large half-scale objects they cover
    poorly or cut into pieces inside a cell (``half_cell``: the half-scale cell probability).

    Each large object is looked at in its bounding box (two pixels wider): its pieces, cuts and
    cut support depend on nothing farther away.
    """
    from scipy import ndimage as ndi

    # an object covers at most 4 full-scale pixels per half-scale one: none large enough, no work
    most = 4 * np.bincount(half.ravel())[1:]
    if not len(most) or 2.0 * np.sqrt(most.max() / np.pi) < LARGE_CELL_DIAMETERS * cell_diameter:
        return full
    half = _upsampled(half, (slice(0, full.shape[0]), slice(0, full.shape[1])))
    areas = np.bincount(half.ravel())
    areas[0] = 0
    large = np.flatnonzero(2.0 * np.sqrt(areas / np.pi) >= LARGE_CELL_DIAMETERS * cell_diameter)
    if not len(large):
        return full
    boxes = ndi.find_objects(half)
    piece_area = np.bincount(full.ravel())
    out = full.copy()
    next_id = int(full.max()) + 1
    typical_area = np.pi * cell_diameter**2 / 4
    for i in large:
        box = tuple(slice(max(0, b.start - 2), min(n, b.stop + 2)) for b, n in zip(boxes[i - 1], full.shape))
        cell = half[box] == i
        inside = np.bincount(full[box][cell], minlength=len(piece_area))
        inside[0] = 0
        pieces = np.flatnonzero(2 * inside > piece_area)  # full-scale labels lying mostly inside
        if inside.sum() >= LARGE_CELL_COVERAGE * cell.sum() and not (
                len(pieces) >= LARGE_CELL_PIECES and piece_area[pieces].max() >= LARGE_PIECE_CELLS * typical_area
                and _cut_support(full[box], cell, _upsampled(half_cell, box)) >= LARGE_CELL_CUT_SUPPORT):
            continue
        out[np.isin(full, pieces)] = 0
        out[box][cell] = next_id
        next_id += 1
    return out


def _cut_support(full: np.ndarray, cell: np.ndarray, half_cell: np.ndarray) -> float:
    """Mean half-scale cell probability on the cuts of the full-scale labels ``full`` inside
    ``cell``, :data:`CUT_MARGIN` pixels from its outline (0 without cuts). The cuts are the pixels
    whose 3 x 3 neighbourhood holds two labels; ``cell`` lies two pixels inside the window, or
    touches the image's own border."""
    from scipy import ndimage as ndi

    cuts = ndi.binary_erosion(cell, iterations=CUT_MARGIN)
    if not cuts.any():
        return 0.0
    cuts &= ndi.grey_dilation(full, size=3) != ndi.grey_erosion(full, size=3)
    return float(half_cell[cuts].mean()) if cuts.any() else 0.0


def add_large_cells(labels, half_probabilities, *, cell_diameter: float, **label_kwargs) -> np.ndarray:
    """Instance ``labels`` (``(..., Y, X)``, from :func:`~napari_unet.to_labels`) with the cells
    much larger than ``cell_diameter`` taken from the half-scale prediction.

    ``half_probabilities``: ``(n_classes, ..., ceil(Y/2), ceil(X/2))`` from
    :func:`iter_predict_half_scale`. ``label_kwargs``: the other :func:`~napari_unet.to_labels`
    options the labels were made with (e.g. ``border_class``); the half-scale labels use half the
    cell diameter. Labels of planes in instance mode only: 3D objects or classes are refused.
    Returns new int32 labels; ids stay unique over the planes of a stack.
    """
    return fuse_large_cells(labels, half_probabilities, LabelOptions.of({**label_kwargs, "cell_diameter": cell_diameter}))


def fuse_large_cells(labels, half_probabilities, options: LabelOptions, planes=None) -> np.ndarray:
    """:func:`add_large_cells` with the labels' ``options``; ``planes``: a boolean array over the
    planes of ``labels`` (``labels.shape[:-2]``), the planes to fuse (None: all); the others
    keep their labels, renumbered with the rest."""
    cell_diameter = options.cell_diameter
    if options.mode != "instances" or options.three_d:
        raise ValueError("the half-scale pass takes instance labels of planes, not "
                         + ("3D objects (three_d=True)" if options.three_d else f"mode={options.mode!r}"))
    labels = np.asarray(labels)
    if not cell_diameter or cell_diameter <= 0:
        raise ValueError("the half-scale pass needs the typical cell diameter (the model's painted cells, "
                         f"or cell_diameter=...), got {cell_diameter!r}")
    expected = (*labels.shape[:-2], (labels.shape[-2] + 1) // 2, (labels.shape[-1] + 1) // 2)
    if tuple(np.shape(half_probabilities))[1:] != expected:
        raise ValueError(f"half-scale probabilities of shape {np.shape(half_probabilities)} do not fit labels of "
                         f"shape {labels.shape}: expected (n_classes, *{expected})")
    half_options = options.but(cell_diameter=cell_diameter / 2, spacing=None)
    if options.split == "distance" and options.split_h is None:
        # the objects this pass is for are large: their split keeps 0.1 x diameter (at least 1 px)
        half_options = half_options.but(split_h=split_height(cell_diameter / 2, small_cells=False))
    wanted = np.ones(labels.shape[:-2], bool) if planes is None else np.asarray(planes, bool)
    planes = list(np.ndindex(*labels.shape[:-2]))
    half_probabilities = np.asarray(half_probabilities)
    # only the planes whose half-scale labels may hold a large cell are labelled at half scale
    needed = [plane for plane in planes if wanted[plane] and _may_hold_large_cells(
        half_probabilities[(slice(None), *plane)], half_options, float(cell_diameter))]
    half = {}
    if needed:
        picked = half_probabilities if len(needed) == len(planes) else np.stack(
            [half_probabilities[(slice(None), *plane)] for plane in needed], axis=1)
        labelled = to_labels_in_blocks(picked, half_options).reshape(len(needed), *picked.shape[-2:])
        half = dict(zip(needed, labelled))  # the same objects, on every core
    out = np.empty(labels.shape, np.int32)
    offset = 0
    for plane in planes:
        fused = labels[plane]
        if plane in half:
            half_cell = 1.0 - np.asarray(half_probabilities[(0, *plane)], np.float32)
            fused = _fuse_plane(fused, half[plane], float(cell_diameter), half_cell)
        fused = fused.astype(np.int32, copy=False)  # renumbered 1..n after the ids of the planes before
        out[plane], n = renumbered(fused, np.bincount(fused.ravel()) > 0, offset)
        offset += n
    return out


def _may_hold_large_cells(half_probabilities: np.ndarray, options: LabelOptions, cell_diameter: float) -> bool:
    """Whether the half-scale labels of one plane (``half_probabilities``: ``(n_classes, y, x)``,
    labelled with ``options``) may hold an object as large as :func:`_fuse_plane` replaces
    (:data:`LARGE_CELL_DIAMETERS` typical cells, ``cell_diameter`` full-scale pixels wide).

    Every object of :func:`~napari_unet.to_labels` lies in one 8-connected piece, holes filled, of
    the pixels whose cell probability (plus the border class's) reaches the lowest of: what wins
    the argmax (1 / n_classes), :data:`~napari_unet.labels.instances.UNSURE_P` (the regions that
    join objects) and the threshold. A plane whose pieces are all smaller than a large cell gets
    the same labels from the fuse without its half-scale labels, which cost more than this test.
    """
    from scipy import ndimage as ndi

    cell = np.asarray(half_probabilities[options.cell_class], np.float32)
    if options.border_class is not None:
        cell = cell + np.asarray(half_probabilities[options.border_class], np.float32)
    lowest = min(1.0 / half_probabilities.shape[0], UNSURE_P,
                 options.threshold if options.threshold is not None else 1.0)
    region = ndi.binary_fill_holes(cell >= lowest - 1e-4)  # float32 probabilities sum to 1 within 1e-6
    pieces, n = ndi.label(region, structure=np.ones((3, 3), bool))
    if not n:
        return False
    most = 4 * int(np.bincount(pieces.ravel())[1:].max())  # 4 full-scale pixels per half-scale one
    return 2.0 * np.sqrt(most / np.pi) >= LARGE_CELL_DIAMETERS * cell_diameter


def half_scale_wanted(probabilities, labels, options: LabelOptions) -> np.ndarray:
    """Which planes of the full-scale result (``probabilities`` ``(n_classes, ..., Y, X)``,
    instance ``labels`` ``(..., Y, X)`` made from them with ``options``) want the half-scale pass:
    a boolean array over the planes (``labels.shape[:-2]``).

    A plane wants it when it holds an object, or an 8-connected region the network was unsure
    of (cell probability at least :data:`~napari_unet.labels.instances.UNSURE_P`) and left
    unlabelled, whose area is that of a cell :data:`LARGE_CELL_DIAMETERS` typical cells wide: what
    the full scale makes of a cell much larger than the painted ones, found whole or seen as
    fragments in an unsure inside. A plane of cells of the painted size shows neither.

    >>> p = np.zeros((2, 60, 60), np.float32); p[0] = 1
    >>> labels = np.zeros((60, 60), np.int32); labels[5:15, 5:15] = 1      # a cell 10 px wide
    >>> options = LabelOptions.of({"cell_diameter": 10.0})
    >>> bool(half_scale_wanted(p, labels, options))
    False
    >>> p[:, 20:55, 20:55] = [[[0.6]], [[0.4]]]                             # unsure over 35 x 35 px
    >>> bool(half_scale_wanted(p, labels, options))
    True
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    large = LARGE_CELL_DIAMETERS**2 * np.pi * float(options.cell_diameter) ** 2 / 4
    wanted = np.zeros(labels.shape[:-2], bool)
    for plane in np.ndindex(*labels.shape[:-2]):
        plane_labels = labels[plane]
        if np.bincount(plane_labels.ravel())[1:].max(initial=0) >= large:
            wanted[plane] = True
            continue
        cell = np.asarray(probabilities[(options.cell_class, *plane)], np.float32)
        if options.border_class is not None:
            cell = cell + np.asarray(probabilities[(options.border_class, *plane)], np.float32)
        unsure = (cell >= UNSURE_P) & (plane_labels == 0)
        if np.count_nonzero(unsure) >= large:
            pieces, _ = ndi.label(unsure, structure=np.ones((3, 3), bool))
            wanted[plane] = np.bincount(pieces.ravel())[1:].max(initial=0) >= large
    return wanted


def applies(options: LabelOptions) -> bool:
    """Whether the half-scale pass applies to labels made with these options: instances of planes
    (not 3D objects) with a known typical cell diameter."""
    return options.mode == "instances" and not options.three_d and bool(options.cell_diameter)


def iter_large_cells(model, data, labels, options: LabelOptions, predict: PredictOptions, *,
                     axes: str, planes=None) -> Generator[tuple[int, int], None, Any]:
    """Generator: the half-scale pass over ``labels`` (made from ``data`` with ``options``); yields
    ``(done, total)`` tiles of the half-scale prediction and returns the new labels, or ``labels``
    unchanged when the pass does not apply (:func:`applies`) or no plane wants it.

    ``data``, ``axes``: as the full-scale prediction got them (channels first, or last as
    ``"YXC"``); ``predict``: its device, pixel size, views and normalization (None: the full
    scale's range); ``planes``: the planes that want the pass (:func:`half_scale_wanted`; None:
    all). Only those planes of a stack are predicted at half scale, each as it would be in the
    whole stack (one normalization, views decided plane by plane).
    """
    if not applies(options) or (planes is not None and not np.any(planes)):
        return labels
    if axes.endswith("C"):
        from ..common.axes import channels_last_to_first

        data, axes = channels_last_to_first(data, axes)
    if planes is None or np.all(planes):
        half = yield from _iter_half_scale(model, data, predict, axes)
        return fuse_large_cells(labels, half, options, planes)
    if predict.normalize is None:  # the whole stack's range, as for the whole stack
        from ..predict.tiling import normalization_range

        predict = predict.but(normalize=normalization_range(model, data, axes=axes) or True)
    picked, picked_axes = _picked_planes(data, axes, planes)
    picked_half = yield from _iter_half_scale(model, picked, predict, picked_axes)
    wanted = np.asarray(planes, bool)
    half = np.zeros((picked_half.shape[0], *wanted.shape, *picked_half.shape[-2:]), np.float32)
    half[(slice(None), wanted)] = picked_half  # the planes not wanted are not looked at
    return fuse_large_cells(labels, half, options, wanted)


def _picked_planes(data, axes: str, planes) -> tuple[np.ndarray, str]:
    """The planes of ``data`` (channels first or none) where ``planes`` holds, stacked along one
    leading axis ``"Z"`` in the order of :func:`numpy.ndindex` over them: ``(array, its axes)``."""
    data = np.asarray(data)
    leading = [i for i, name in enumerate(axes) if name not in "CYX"]
    moved = np.moveaxis(data, leading, range(len(leading)))
    flat = moved.reshape(-1, *moved.shape[len(leading):])
    return flat[np.flatnonzero(np.ravel(planes))], "Z" + "".join(name for name in axes if name in "CYX")
