"""Probabilities -> labels: class maps or one id per cell, ready for a napari Labels layer.

Examples
--------
>>> import numpy as np
>>> p = np.zeros((2, 6, 6), np.float32); p[0] = 1
>>> p[:, 1:3, 1:3] = [[[0]], [[1]]]; p[:, 4:6, 4:6] = [[[0]], [[1]]]
>>> labels = to_labels(p, "instances", min_size=1)
>>> labels.dtype, int(labels.max())
(dtype('int32'), 2)
>>> int(to_labels(p, "classes")[1, 1])
1
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..common.checks import check_float, check_int
from ..common.memory import check_allocation
from .seeds import distance_to_background, dynamic_maxima

__all__ = ["to_labels", "label_options", "label_context", "split_height"]

_SPLITS = (None, "distance", "probability")

#: split height of the distance split, as a fraction of the typical cell diameter ...
SPLIT_H_PER_DIAMETER = 0.1
#: ... for cells at least this many pixels wide; for narrower cells the fraction shrinks in
#: proportion to the diameter (:func:`split_height`), to at least SPLIT_H_MIN pixels
SPLIT_FULL_DIAMETER = 25.0
SPLIT_H_MIN = 0.5
#: smallest object kept, as a fraction of the area of a typical cell
MIN_SIZE_PER_AREA = 0.1
#: a connected piece of the cell mask smaller than this fraction of a typical cell's area is one
#: cell: the split does not cut it (two cells in it would each be under half the typical diameter;
#: what it cuts there is one odd-shaped cell, e.g. a dividing one); nor do objects stay apart that
#: one region of cell probability >= UNSURE_P this small holds
MIN_SPLIT_PER_AREA = 0.5
#: cell probability at which the network is unsure rather than sure of background:
#: ``fill_holes="uncertain"`` fills a hole in the cell mask when its mean cell probability is at
#: least this (a large cell's textured inside, not a lumen ringed by cells), and objects one small
#: region at least this probable holds are one cell (:data:`MIN_SPLIT_PER_AREA`)
UNSURE_P = 0.3
#: ``fill_holes="uncertain"`` fills such a hole only when it is no wider than this many typical
#: cell diameters (30 px when the diameter is unknown): a hole is a local thing, so labelling a
#: window with :func:`label_context` pixels of context around a block fills the same holes as
#: labelling the whole image
HOLE_EXTENT_PER_DIAMETER = 3.0


def split_height(cell_diameter: float, *, small_cells: bool = True) -> float:
    """Default height (pixels) of the maxima that seed the distance split, for cells
    ``cell_diameter`` pixels wide: ``SPLIT_H_PER_DIAMETER`` (0.1) of the diameter for cells of
    ``SPLIT_FULL_DIAMETER`` (25 px) and more. The neck between two touching cells is a few pixels
    wide whatever their size, so between small cells it leaves a dip in the distance transform that
    is a smaller part of their diameter: below 25 px the fraction shrinks with the diameter (0.1 x
    d / 25), down to ``SPLIT_H_MIN`` (0.5 px). ``small_cells=False`` keeps 0.1 x d (at least 1 px),
    the rule before small cells had their own (the half-scale pass labels large cells with it).

    Examples
    --------
    >>> [round(split_height(d), 2) for d in (40.0, 25.0, 20.0, 10.0)]
    [4.0, 2.5, 1.6, 0.5]
    >>> split_height(10.0, small_cells=False)
    1.0
    """
    d = float(cell_diameter)
    if not small_cells:
        return max(1.0, SPLIT_H_PER_DIAMETER * d)
    return max(SPLIT_H_MIN, SPLIT_H_PER_DIAMETER * d * min(1.0, d / SPLIT_FULL_DIAMETER))


def _typical_size(cell_diameter: float, sampling=None) -> float:
    """Pixels of a typical cell ``cell_diameter`` (xy) pixels wide: a disc's area, or a ball's
    volume in voxels of size ``sampling`` (xy pixels) when labelling in 3D."""
    if sampling is not None:
        return float(np.pi * cell_diameter**3 / 6 / float(np.prod(sampling)))
    return float(np.pi * cell_diameter**2 / 4)


def _scaled_defaults(split, split_h, min_size, cell_diameter, sampling=None):
    """Fill in ``split_h`` and ``min_size`` and give the size under which a connected piece is not
    split (0: no such size): scaled to the cell size when it is known (``sampling``: the voxel size
    of 3D labelling, in xy pixels)."""
    min_split = 0
    if cell_diameter is not None:
        cell_diameter = check_float("cell_diameter (pixels)", cell_diameter, above=0.0)
        min_split = int(round(MIN_SPLIT_PER_AREA * _typical_size(cell_diameter, sampling)))
    if split_h is None:
        if split == "probability":
            split_h = 0.1
        elif cell_diameter is not None:
            split_h = split_height(cell_diameter)
        else:
            split_h = 2.0
    if min_size is None:
        if cell_diameter is not None:
            min_size = max(1, int(round(MIN_SIZE_PER_AREA * _typical_size(cell_diameter, sampling))))
        else:
            min_size = 10
    return (check_float("split_h", split_h, above=0.0), check_int("min_size", min_size, minimum=0), min_split)


#: the largest ratio between two sides of a voxel that 3D labelling accepts
MAX_ANISOTROPY = 64.0
#: peak bytes per voxel of 3D labelling (probabilities, masks, distance transform, watershed)
BYTES_PER_3D_VOXEL = 120


def _hole_extent(cell_diameter) -> float:
    return HOLE_EXTENT_PER_DIAMETER * float(cell_diameter) if cell_diameter else 30.0


def label_context(cell_diameter: float | None) -> int:
    """Pixels of context on each side of a block that labelling it needs to give the labels of
    the whole image: the widest hole that may be filled, and two cell diameters beyond it for the
    split (5 diameters; 64 px when the diameter is unknown)."""
    if not cell_diameter:
        return 64
    return max(32, math.ceil(2 * float(cell_diameter) + _hole_extent(cell_diameter)))


def label_options(model, mode: str | None = None, *, pixel_size=None) -> dict:
    """Keyword arguments of :func:`to_labels` that a trained model implies.

    ``mode`` (given, or the model's) and, in instance mode, the ``cell_diameter`` the model
    learnt from the painted cells and the ``border_class`` of a model that learnt cell borders
    (``TrainConfig.borders``): ``to_labels(probabilities, **label_options(model))``. With the
    image's ``pixel_size`` (micrometres, y and x) and a model that knows the diameter in
    micrometres (``"cell_diameter_um"``), the diameter is given in the image's pixels.

    Examples
    --------
    >>> class M: metadata = {"mode": "instances", "cell_diameter": 20.0}
    >>> label_options(M())
    {'mode': 'instances', 'cell_diameter': 20.0}
    """
    meta = getattr(model, "metadata", None) or {}
    mode = mode or meta.get("mode") or ("classes" if getattr(getattr(model, "config", None), "n_classes", 2) > 2 else "instances")
    options: dict = {"mode": mode}
    diameter = meta.get("cell_diameter")
    if pixel_size is not None and meta.get("cell_diameter_um"):  # the image's grid: the diameter in its pixels
        from ..common.pixel_size import check_pixel_size

        py, px = check_pixel_size(pixel_size)
        diameter = round(float(meta["cell_diameter_um"]) / math.sqrt(py * px), 3)
    if mode == "instances" and diameter:
        options["cell_diameter"] = float(diameter)
    if mode == "instances" and meta.get("border_class") is not None:
        options["border_class"] = int(meta["border_class"])
    return options


def _seeded_instances(probabilities, cell_class, border_class, threshold, connectivity, min_seed, sigma=1.0):
    """Instances of a network with a cell-border class: one seed per cell interior, grown over
    interior + border (a watershed of the smoothed interior probability)."""
    from skimage.measure import label as cc_label
    from skimage.segmentation import watershed

    interior_p = probabilities[cell_class]
    cell_p = interior_p + probabilities[border_class]
    if threshold is None:
        winner = np.argmax(probabilities, axis=0)
        mask = (winner == cell_class) | (winner == border_class)
        interior = winner == cell_class
    else:
        mask = cell_p > threshold
        interior = interior_p > threshold
    markers = cc_label(interior & mask, connectivity=1)
    if min_seed > 1 and markers.max():  # specks of interior are no cells: the flood takes them
        sizes = np.bincount(markers.ravel())
        markers[(sizes < min_seed)[markers] & (markers > 0)] = 0
    surface = ndi.gaussian_filter(interior_p.astype(np.float32, copy=False), sigma)
    labels = watershed(-surface, markers, mask=mask, connectivity=connectivity)
    # parts of the mask that no interior reached (a small or thin cell) are cells of their own
    rest = cc_label(mask & (labels == 0), connectivity=connectivity)
    if rest.max():
        labels = np.where(rest > 0, rest + labels.max(), labels)
    return labels


def _instances(
    probabilities: np.ndarray,
    *,
    cell_class: int,
    border_class: int | None,
    threshold: float | None,
    split: str | None,
    split_h: float,
    min_size: int,
    min_split: int,
    fill_holes: bool | str,
    max_hole: float,
    connectivity: int,
    sampling=None,
) -> np.ndarray:
    """Instance labels 1..n of one plane (n_classes, Y, X) or volume (n_classes, Z, Y, X) with the
    voxel size ``sampling`` (in xy pixels); connected pieces under ``min_split`` pixels stay whole."""
    sigma = 1.0 if sampling is None else tuple(1.0 / s for s in sampling)
    from skimage.measure import label as cc_label

    if border_class is not None:
        labels = _seeded_instances(probabilities, cell_class, border_class, threshold, connectivity,
                                   max(1, min_size // 4), sigma)
        return _size_filter(labels, min_size)
    cell = probabilities[cell_class]
    if threshold is None:
        mask = np.argmax(probabilities, axis=0) == cell_class
    else:
        mask = cell > threshold
    if fill_holes:
        mask = _filled(mask, cell, max_hole, sampling) if fill_holes == "uncertain" else ndi.binary_fill_holes(mask)
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    if split is None:
        labels = cc_label(mask, connectivity=connectivity)
    else:
        if split == "distance":
            surface = distance_to_background(mask, sampling)
            surface = ndi.gaussian_filter(surface, sigma)
        else:  # "probability"
            surface = ndi.gaussian_filter(cell.astype(np.float32, copy=False), sigma)
        surface = np.where(mask, surface, 0)
        markers = cc_label(dynamic_maxima(surface, split_h) & mask, connectivity=connectivity)
        # every component gets at least one marker (h_maxima misses components lower than h)
        components = cc_label(mask, connectivity=connectivity)
        # the components without a marker: each a marker of its own, numbered after the others
        marked = np.bincount(components[markers > 0], minlength=int(components.max()) + 1) > 0
        extra, n_extra = renumbered(components, ~marked)
        if n_extra:
            markers = np.where(extra > 0, extra + markers.max(), markers)
        labels = _flooded(surface, markers, components, mask, connectivity)
        if min_split:
            labels = _unsplit(labels, components, min_split)
    if min_split:
        labels = _joined_where_unsure(labels, cell, min_split, min_size, connectivity)
    return _size_filter(labels, min_size)


def _flooded(surface, markers, components, mask, connectivity) -> np.ndarray:
    """``watershed(-surface, markers, mask=mask, connectivity=connectivity)``, run only on the
    components of ``mask`` that hold two or more markers: a component with one is all that
    marker's (most cells), and the flood's heap sees the clumps alone."""
    from skimage.segmentation import watershed

    marked = markers > 0
    where, which = components[marked], markers[marked]
    owner = np.zeros(int(components.max()) + 1, markers.dtype)
    owner[where] = which  # one of each component's markers (counts and writes, no sort)
    shared = np.zeros(owner.size, bool)
    shared[where[which != owner[where]]] = True
    if not shared.any():
        return owner[components]
    clumps = shared[components]
    labels = watershed(-surface, np.where(clumps, markers, 0), mask=mask & clumps, connectivity=connectivity)
    return np.where(clumps, labels, owner[components])


def _unsplit(labels: np.ndarray, components: np.ndarray, min_split: int) -> np.ndarray:
    """``labels`` with every connected component of fewer than ``min_split`` pixels one object again."""
    small = np.bincount(components.ravel()) < min_split
    small[0] = False
    if not small.any():
        return labels
    whole = small[components]
    labels[whole] = components[whole] + labels.max()
    return labels


def _joined_where_unsure(labels: np.ndarray, cell: np.ndarray, min_split: int, min_size: int, connectivity: int):
    """``labels`` where a connected region of cell probability >= :data:`UNSURE_P` under
    ``min_split`` pixels holds two or more objects of at least ``min_size`` pixels: those objects
    and the region made one object (pieces of one odd cell the network was unsure between, e.g. a
    dividing cell's chromosomes, not cells of their own; the region joins them into one connected
    piece, and the objects keep their pixels outside it, e.g. a filled hole)."""
    from skimage.measure import label as cc_label

    unsure = cc_label(cell >= UNSURE_P, connectivity=connectivity)
    small = np.bincount(unsure.ravel()) < min_split
    small[0] = False
    kept = np.bincount(labels.ravel()) >= max(min_size, 1)
    kept[0] = False
    inside = small[unsure] & kept[labels]
    if not inside.any():
        return labels
    pairs = np.unique(np.stack([unsure[inside], labels[inside]]), axis=1)  # (region, object) pairs
    regions, n_objects = np.unique(pairs[0], return_counts=True)
    joined = regions[n_objects > 1]
    if not joined.size:
        return labels
    new_id = np.zeros(small.size, labels.dtype)
    new_id[joined] = labels.max() + 1 + np.arange(joined.size)
    lut = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    members = np.isin(pairs[0], joined)
    lut[pairs[1][members]] = new_id[pairs[0][members]]
    new = new_id[unsure]
    return np.where(new > 0, new, lut[labels])


def _filled(mask: np.ndarray, probability: np.ndarray, max_extent: float, sampling=None) -> np.ndarray:
    """``mask`` with the holes filled whose mean cell ``probability`` is at least
    :data:`UNSURE_P` and that span at most ``max_extent`` (xy) pixels along every axis
    (``sampling``: the voxel size in xy pixels)."""
    holes, n = _holes(mask)
    if not n:
        return mask
    mean = np.asarray(ndi.mean(probability, holes, index=np.arange(1, n + 1)))
    size = sampling or (1.0,) * mask.ndim
    extent = np.array([max((s.stop - s.start) * d for s, d in zip(box, size)) for box in ndi.find_objects(holes)])
    fill = (mean >= UNSURE_P) & (extent <= max_extent)
    return mask | np.concatenate([[False], fill])[holes]


def _holes(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndi.label(ndi.binary_fill_holes(mask) & ~mask)`` in one labelling: the components of the
    background (4- / 6-connected) that do not touch the border, numbered 1..n in the same order."""
    background, n = ndi.label(~mask)
    if not n:
        return background, 0
    hole = np.ones(n + 1, bool)
    for axis in range(mask.ndim):  # components touching a face are the outside, not holes
        for end in (0, -1):
            hole[np.take(background, end, axis=axis)] = False
    return renumbered(background, hole)


def renumbered(labels: np.ndarray, keep: np.ndarray, offset: int = 0) -> tuple[np.ndarray, int]:
    """``labels`` with the ids that ``keep`` (a boolean per id) marks numbered ``offset`` + 1..n in
    their order, the others 0 (a look-up table: counts, not sorts); and n."""
    keep = keep.copy()
    keep[0] = False
    count = int(keep.sum())
    lut = np.zeros(keep.size, labels.dtype)
    lut[keep] = np.arange(offset + 1, offset + count + 1, dtype=labels.dtype)
    return lut[labels], count


def _size_filter(labels, min_size):
    """Objects below ``min_size`` pixels removed, ids made consecutive (int32)."""
    if min_size > 1:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any():
            labels[small[labels]] = 0
    # consecutive ids 1..n in the order of the old ones (relabel_sequential's numbering)
    labels = labels.astype(np.int32, copy=False)
    return renumbered(labels, np.bincount(labels.ravel(), minlength=1) > 0)[0]


def to_labels(
    probabilities,
    mode: str = "instances",
    *,
    cell_class: int = 1,
    border_class: int | None = None,
    threshold: float | None = None,
    split: str | None = "distance",
    split_h: float | None = None,
    min_size: int | None = None,
    cell_diameter: float | None = None,
    fill_holes: bool | str = "uncertain",
    connectivity: int = 1,
    three_d: bool = False,
    spacing=None,
    out=None,
) -> Any:
    """Turn class probabilities into int32 labels.

    Parameters
    ----------
    probabilities : array-like
        ``(n_classes, ..., Y, X)`` softmax probabilities (e.g. from ``predict_tiled`` or
        ``predict_stack``); numpy, memmap, zarr or dask, read plane (or volume) by plane.
    mode : {"instances", "classes"}
        "classes": the argmax (0 = background, k = class k). "instances": one id per cell of
        ``cell_class``; planes of a stack are labelled one by one, ids unique across the stack.
    cell_class : int
        Class counted as cells in instance mode (the cell interior when ``border_class`` is given).
    border_class : int, optional
        A network that learnt cell borders (``TrainConfig.borders``): each connected cell interior
        seeds one instance, grown over interior and border pixels; ``split`` is then not used.
    threshold : float, optional
        Cells are pixels whose ``cell_class`` probability exceeds it (None: the argmax).
    split : {None, "distance", "probability"}
        Split merged cells with a watershed seeded by the h-maxima of the distance transform
        ("distance", the default) or of the smoothed cell probability ("probability"); None keeps
        the connected components (the distance split catches the touching pairs a network still
        merges: ``benchmarks/README.md``).
    split_h : float, optional
        Height of the maxima that seed the split; larger values split less. Default for
        "distance": ``0.1 * cell_diameter`` pixels when the cell diameter is known (less for cells
        under 25 px: :func:`split_height`), else 2 pixels; for "probability": 0.1.
    min_size : int, optional
        Objects smaller than this many pixels (voxels with ``three_d``) are removed. Default: a
        tenth of a typical cell's area (volume) when the cell diameter is known, else 10.
    cell_diameter : float, optional
        Typical cell diameter in (xy) pixels, e.g. the painted cells' median that a trained model
        keeps (:func:`label_options`): the split and the size filter scale with it, and the split
        leaves whole a connected piece smaller than half a typical cell (:data:`MIN_SPLIT_PER_AREA`).
    fill_holes : {"uncertain", True, False}
        "uncertain": fill the holes of the cell mask the network was unsure of (mean probability
        >= :data:`UNSURE_P`, at most 3 diameters wide), keep a sure lumen; True: all.
    connectivity : {1, 2}
        Pixel connectivity of a cell: 1 = 4-neighbours (6 in 3D), 2 = 8-neighbours (18 in 3D).
    three_d : bool
        Label 3D objects in ``(n_classes, ..., Z, Y, X)``: one id per object over its planes,
        touching objects split by a watershed of the anisotropic distance transform.
    spacing : (dz, dy, dx), optional
        Voxel size with ``three_d`` (any unit, e.g. micrometres); default isotropic voxels.
    out : array-like, optional
        int32 array of shape ``probabilities.shape[1:]`` to write into (e.g. zarr).

    Returns ``labels`` (np.ndarray, or ``out``): int32, shape ``probabilities.shape[1:]``.
    """
    if mode not in ("instances", "classes"):
        raise ValueError(f'mode must be "instances" or "classes", got {mode!r}')
    probabilities, shape = _as_probabilities(probabilities)
    border_class, threshold = _checked_options(mode, shape[0], cell_class, border_class, split, connectivity, threshold,
                                               fill_holes)
    sampling = _sampling(three_d and mode == "instances", spacing, shape)
    split_h, min_size, min_split = _scaled_defaults(split, split_h, min_size, cell_diameter, sampling)
    out = _output_array(out, shape[1:])
    if mode == "classes":
        return _label_planes(probabilities, out, _classes_2d, unique_ids=False)
    instances = partial(_instances, cell_class=int(cell_class), border_class=border_class, threshold=threshold, split=split,
                        split_h=float(split_h), min_size=int(min_size), min_split=min_split, fill_holes=fill_holes,
                        max_hole=_hole_extent(cell_diameter), connectivity=connectivity,
                        sampling=sampling)
    return _label_planes(probabilities, out, instances, unique_ids=True, dims=2 if sampling is None else 3)


def _sampling(three_d: bool, spacing, shape) -> tuple[float, float, float] | None:
    """Voxel size relative to the xy pixel (distances in xy pixels), or None for planes."""
    if not three_d:
        return None
    if len(shape) < 4:
        raise ValueError(f"three_d needs probabilities (n_classes, ..., Z, Y, X), got shape {shape}")
    volume = int(np.prod(shape[-3:], dtype=np.float64))
    check_allocation(BYTES_PER_3D_VOXEL * volume, f"labelling 3D objects in a volume of {shape[-3:]} voxels",
                     hint="label the planes one by one (three_d=False), or a smaller part of the stack")
    if spacing is None:
        return (1.0, 1.0, 1.0)
    try:
        dz, dy, dx = (check_float(f"spacing[{i}]", v, above=0.0) for i, v in enumerate(spacing))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"spacing must be three positive numbers (dz, dy, dx), got {spacing!r} ({exc})") from None
    longest = max(dz, dy, dx)
    dz, dy, dx = dz / longest, dy / longest, dx / longest  # no overflow nor underflow below
    if max(dz, dy, dx) > MAX_ANISOTROPY * min(dz, dy, dx):
        raise ValueError(f"spacing {tuple(spacing)} makes a voxel {max(dz, dy, dx) / min(dz, dy, dx):.3g} x longer on "
                         f"one axis than on another: beyond {MAX_ANISOTROPY:g} x, 3D objects cannot be told apart (a "
                         "wrong spacing in the file's metadata?); give the true spacing, or label the planes one by "
                         "one (three_d=False)")
    xy = math.sqrt(dy * dx)
    return dz / xy, dy / xy, dx / xy


def _as_probabilities(probabilities):
    """``(probabilities, shape)``: an array-like of shape (n_classes >= 2, ..., Y, X), nothing empty."""
    if not hasattr(probabilities, "shape") or not hasattr(probabilities, "__getitem__"):
        probabilities = np.asarray(probabilities)
    shape = tuple(int(s) for s in probabilities.shape)
    if len(shape) < 3:
        raise ValueError(
            f"probabilities must be (n_classes, ..., Y, X) with at least 3 axes, got shape {shape}"
        )
    if shape[0] < 2:
        raise ValueError(f"probabilities need at least 2 classes on axis 0, got shape {shape}")
    if any(s == 0 for s in shape):
        raise ValueError(f"probabilities are empty: shape {shape}")
    return probabilities, shape


def _checked_options(mode, n_classes, cell_class, border_class, split, connectivity, threshold, fill_holes):
    """Check the options of :func:`to_labels` (classes against ``n_classes``); the border class as
    an int and the threshold as a float."""
    if mode == "instances" and not 0 <= int(cell_class) < n_classes:
        raise ValueError(f"cell_class must be in [0, {n_classes - 1}] for {n_classes} classes, got {cell_class}")
    if border_class is not None and mode == "instances":
        if not 0 <= int(border_class) < n_classes or int(border_class) == int(cell_class):
            raise ValueError(f"border_class must be a class in [0, {n_classes - 1}] other than cell_class "
                             f"{cell_class}, got {border_class}")
        border_class = int(border_class)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    if not (isinstance(fill_holes, bool) or isinstance(fill_holes, str) and fill_holes == "uncertain"):
        raise ValueError(f'fill_holes must be "uncertain", True or False, got {fill_holes!r}')
    if threshold is not None:
        threshold = check_float("threshold", threshold, minimum=0.0, below=1.0)
    return border_class, threshold


def _output_array(out, labels_shape):
    """``out``, checked against ``labels_shape``, or a new int32 array of zeros."""
    if out is None:
        check_allocation(4 * int(np.prod(labels_shape, dtype=np.float64)), f"labels of shape {labels_shape}",
                         hint="pass out= (e.g. a zarr array) to write them to disk")
        return np.zeros(labels_shape, np.int32)
    if tuple(int(s) for s in out.shape) != labels_shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {labels_shape}")
    return out


def _classes_2d(probabilities: np.ndarray) -> np.ndarray:
    """Class labels of one plane (n_classes, Y, X): the argmax."""
    return np.argmax(probabilities, axis=0).astype(np.int32)


def _label_planes(probabilities, out, label_plane, *, unique_ids: bool, dims: int = 2):
    """Write ``label_plane(p)`` of every (n_classes, Y, X) plane ``p`` (``dims=3``: (n_classes, Z,
    Y, X) volume) into ``out``; with ``unique_ids`` the ids of each follow those before it."""
    offset = 0
    for plane in np.ndindex(*tuple(int(s) for s in out.shape)[:-dims]):
        p = np.asarray(probabilities[(slice(None), *plane)])
        if p.dtype.kind == "f" and not np.isfinite(p).all():
            raise ValueError(f"probabilities{'' if not plane else ' of plane ' + str(plane)} hold NaN or infinite "
                             "values: the model's weights are broken (a diverged training); retrain it")
        labels = label_plane(p)
        n = int(labels.max()) if unique_ids else 0
        if offset and n:
            labels = np.where(labels > 0, labels + offset, 0).astype(np.int32)
        out[plane] = labels
        offset += n
    return out
