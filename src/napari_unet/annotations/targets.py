"""Training targets from sparse annotations: classes, loss weights and the annotated mask.

Annotation convention (one label image per image, same shape, integers):

- ``0`` = not annotated: target 0, weight 0, mask False (the loss ignores it);
- ``1`` = background;
- instance mode: ``2, 3, ...`` = one id per cell (touching cells carry different ids)
  -> class 0 background, class 1 cell;
- class mode: ``1..K`` = classes (1 still background) -> annotation ``k`` is class ``k - 1``.

A complete painted cell also says where it ends: the 1-px gap between touching cells and the
ring around every painted cell are background (:func:`insert_gaps`, :func:`cell_ring`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from ..common.checks import check_integer_labels
from .weights import class_weight_values, weight_map

__all__ = ["Targets", "make_targets", "insert_gaps", "cell_ring", "cell_borders", "instances_to_annotations",
           "painted_cell_diameter"]


class Targets(NamedTuple):
    """Per-pixel training targets of one 2D plane (Y, X), or of a painted volume (Z, Y, X)."""

    target: np.ndarray
    """int64 class index (0 where not annotated)."""
    weights: np.ndarray
    """float32 loss weight (0 where not annotated)."""
    mask: np.ndarray
    """bool: annotated pixels."""


def insert_gaps(annotations) -> np.ndarray:
    """Turn pixels where two different cells touch into background (a 1-pixel gap).

    A cell pixel (id >= 2) becomes background (1) when one of its 8 neighbours (26 in a painted
    volume) belongs to a cell with a larger id. Afterwards no two different cells are neighbours,
    and the gap is one pixel wide (taken from the cell with the smaller id), as in the Fiji U-Net
    plugin; in a volume, two cells stacked along z get a gap one z-step thick.

    Examples
    --------
    >>> import numpy as np
    >>> ann = np.array([[2, 2, 3, 3]])
    >>> insert_gaps(ann).tolist()
    [[2, 1, 3, 3]]
    """
    ann = check_integer_labels(annotations)
    if ann.ndim not in (2, 3):
        raise ValueError(f"annotations must be 2D (Y, X) or a painted volume (Z, Y, X), got shape {ann.shape}")
    out = ann.copy()
    if ann.size == 0:
        return out
    larger_neighbour = ndi.maximum_filter(ann, size=3, mode="constant", cval=0) > ann
    out[(ann >= 2) & larger_neighbour] = 1
    return out


def cell_ring(annotations, width: int = 1) -> np.ndarray:
    """Unpainted pixels within ``width`` pixels (8-connected steps) of a painted cell.

    In instance mode a painted cell is a complete cell, so the pixels just outside it are not
    that cell: they are background, or the 1-px gap to a neighbour that touches it (the paper's
    gap is background too). Returns a bool mask of those pixels (annotation 0 only: what the
    user painted is never changed; unpainted specks inside one cell are not background).

    Examples
    --------
    >>> import numpy as np
    >>> ann = np.zeros((1, 7), np.uint16); ann[0, 3] = 2
    >>> cell_ring(ann).astype(int).tolist()
    [[0, 0, 1, 0, 1, 0, 0]]
    """
    ann = check_integer_labels(annotations)
    if int(width) < 0:
        raise ValueError(f"ring width must be >= 0 pixels, got {width}")
    cells = ann >= 2
    if int(width) == 0 or not cells.any():
        return np.zeros(ann.shape, bool)
    near = ndi.binary_dilation(cells, structure=np.ones((3,) * ann.ndim, bool), iterations=int(width))
    return near & (ann == 0) & ~_holes(ann)


def _holes(ann: np.ndarray) -> np.ndarray:
    """Unpainted pixels enclosed by one painted cell: a speck the brush missed inside it, no
    background (a gap that two touching cells enclose together is not a hole of either)."""
    cells = ann >= 2
    enclosed = ndi.binary_fill_holes(cells) & ~cells
    if not enclosed.any():
        return enclosed
    parts, n = ndi.label(enclosed)
    # the cell pixels next to each enclosed part: one cell id around it makes it that cell's hole
    near = np.where(cells, ndi.grey_dilation(parts, footprint=np.ones((3,) * ann.ndim, bool)), 0)
    index = np.arange(1, n + 1)
    one_cell = np.zeros(n + 1, bool)
    one_cell[1:] = np.asarray(ndi.minimum(ann, near, index)) == np.asarray(ndi.maximum(ann, near, index))
    return one_cell[parts] & (ann == 0)


def cell_borders(annotations) -> np.ndarray:
    """Pixels of painted cells (ids >= 2) that have an 8-neighbour of another label.

    The outline of each painted cell, one pixel wide, inside the cell; the image border is not
    an outline (a neighbour beyond it counts as the same label).

    Examples
    --------
    >>> import numpy as np
    >>> ann = np.zeros((1, 6), np.uint16); ann[0, 1:5] = 2
    >>> cell_borders(ann).astype(int).tolist()
    [[0, 1, 0, 0, 1, 0]]
    """
    ann = check_integer_labels(annotations)
    if not ann.size:
        return np.zeros(ann.shape, bool)
    differs = (ndi.grey_dilation(ann, size=3, mode="nearest") != ann) | (ndi.grey_erosion(ann, size=3, mode="nearest") != ann)
    return differs & (ann >= 2)


def make_targets(
    annotations,
    *,
    mode: str = "instances",
    n_classes: int | None = None,
    gap: bool = True,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights="balanced",
    ring: int = 0,
    ring_border: bool = False,
    borders: bool = False,
    spacing=None,
) -> Targets:
    """Class targets, loss weights and annotated mask of one 2D annotation, or of a painted volume.

    Parameters
    ----------
    annotations : (Y, X) int array, or (Z, Y, X) for a painted volume
        See the module docstring for the convention. A painted volume (cells painted in
        consecutive slices, one id per cell through the slices) gets its gaps, ring and border
        term in 3D: two cells stacked along z are kept apart by a gap one z-step thick. Its ring
        stays within the slices that hold painting, as a cell painted in some slices may go on
        in the unpainted ones above and below.
    mode : "instances" or "classes"
    n_classes : int, optional
        Class mode: number of classes (default: the largest annotated id). Instance mode: 2.
    gap : bool
        Instance mode: first turn pixels where two cells touch into a 1-px background gap
        (:func:`insert_gaps`); the gap pixels are background with their weight-map value.
    w0, sigma, class_weights
        Passed to :func:`napari_unet.annotations.weights.weight_map` (class balance is computed on this
        plane's annotated pixels, after gap insertion).
    ring : int
        Instance mode: the unpainted pixels within ``ring`` pixels of a painted cell count as
        background (:func:`cell_ring`): a complete painted cell says where it ends.
    ring_border : bool
        Instance mode: the ring pixels also get the border term of a gap, as if a touching
        neighbour lay just beyond them (``w0 exp(-(2 d)^2 / 2 sigma^2)``, d = distance to the
        painted cell), so the loss weighs a cell's edge as it weighs the gap between two cells.
    borders : bool
        Instance mode: three classes instead of two: 0 background, 1 cell interior, 2 cell
        border (the painted cell's pixels on its outline, :func:`cell_borders`). Touching cells
        then meet border to gap to border, and the interiors, which seed the instances at
        prediction, stay apart (Caicedo et al., Cytometry A 2019).
    spacing : (height, width) or (depth, height, width), optional
        The pixel's size in the unit of ``sigma`` when it is not square (an XZ plane of a stack:
        ``(dz / dx, 1)``; a painted volume: ``(dz / dx, 1, 1)``): the border term measures its
        distances with it. None: square pixels.

    Returns
    -------
    Targets(target int64, weights float32, mask bool), each of the annotations' shape.
    """
    if mode not in ("instances", "classes"):
        raise ValueError(f'mode must be "instances" or "classes", got {mode!r}')
    ann = check_integer_labels(annotations)
    if ann.ndim not in (2, 3):
        raise ValueError(f"annotations must be 2D (Y, X) or a painted volume (Z, Y, X), got shape {ann.shape}")
    if ann.size and ann.min() < 0:
        raise ValueError(f"annotations must not contain negative labels, got minimum {ann.min()}")
    if mode == "instances":
        target, weights, mask = _instance_targets(ann, n_classes=n_classes, gap=gap, w0=w0, sigma=sigma,
                                                  class_weights=class_weights, ring=ring,
                                                  ring_border=ring_border, borders=borders, spacing=spacing)
    else:
        mask = ann > 0
        target, weights = _class_targets(ann, mask, n_classes, class_weights)
    weights = np.where(mask, weights, np.float32(0)).astype(np.float32, copy=False)
    return Targets(target, weights, mask)


def _instance_targets(ann, *, n_classes, gap, w0, sigma, class_weights, ring, ring_border, borders, spacing=None):
    """Instance mode of :func:`make_targets`: (target, weights, mask), the weights not yet masked."""
    mask = ann > 0
    expected = 3 if borders else 2
    if n_classes not in (None, expected):
        what = "background, cell, cell border" if borders else "background, cell"
        raise ValueError(f"instance mode has {expected} classes ({what}), got n_classes={n_classes}")
    labels = insert_gaps(ann) if gap else ann
    implied = cell_ring(labels, ring) if ring else None
    if implied is not None and ann.ndim == 3:  # a volume's ring: only in the slices that hold painting
        implied &= (ann > 0).any(axis=(1, 2))[:, None, None]
    if implied is not None and implied.any():
        labels = np.where(implied, 1, labels).astype(labels.dtype, copy=False)
        mask = labels > 0
    target = (labels >= 2).astype(np.int64)
    # w = w_c + the border term; w_c over two classes, or three with the cell borders
    if borders:
        target[cell_borders(labels)] = 2
        values = class_weight_values(np.bincount(target[mask], minlength=3), class_weights)
        class_part = values.astype(np.float32)[target]
    else:
        class_part = weight_map(labels, w0=0.0, class_weights=class_weights, mode="instances")
    weights = class_part + weight_map(labels, w0=w0, sigma=sigma, class_weights=[0.0, 0.0], mode="instances",
                                      spacing=spacing)
    if ring_border and implied is not None and implied.any() and w0:
        d = ndi.distance_transform_edt(labels < 2, sampling=spacing)[implied]
        border = (w0 * np.exp(-((2.0 * d) ** 2) / (2.0 * sigma * sigma))).astype(np.float32)
        weights[implied] = np.maximum(weights[implied], class_part[implied] + border)
    return target, weights, mask


def _class_targets(ann, mask, n_classes, class_weights):
    """Class mode of :func:`make_targets`: (target, weights), the weights not yet masked."""
    top = int(ann.max()) if ann.size else 0
    if n_classes is not None and top > int(n_classes):
        raise ValueError(f"annotation holds class {top}, beyond n_classes={n_classes}")
    target = np.where(mask, ann.astype(np.int64) - 1, 0)
    if isinstance(class_weights, str) or class_weights is None:
        weights = weight_map(ann, class_weights=class_weights, mode="classes")
    else:
        weights = weight_map(ann, class_weights=list(class_weights), mode="classes")
    return target, weights


def instances_to_annotations(instances) -> np.ndarray:
    """Convert a complete instance mask (0 = background, ids >= 1 = cells) to the convention.

    Background becomes 1 and the cells are relabelled consecutively from 2 (in the order of
    their ids), so every pixel is annotated.

    Examples
    --------
    >>> import numpy as np
    >>> instances_to_annotations(np.array([[0, 5, 5, 9]])).tolist()
    [[1, 2, 2, 3]]
    """
    inst = check_integer_labels(instances, "instances")
    if inst.size and inst.min() < 0:
        raise ValueError(f"instances must not contain negative ids, got minimum {inst.min()}")
    ids, inverse = np.unique(inst, return_inverse=True)
    inverse = inverse.reshape(inst.shape)
    # the background (0), if present, is ids[0] -> 1; cells -> 2, 3, ...
    offset = 1 if (ids.size and ids[0] == 0) else 2
    out = inverse + offset
    n = int(out.max()) if out.size else 1
    dtype = np.uint16 if n < 2**16 else np.uint32
    return out.astype(dtype)


# ----------------------------------------------------------------------------- axes and planes


def painted_cell_diameter(annotations, pixel_areas=None) -> float | None:
    """Median equivalent diameter (pixels) of the cells painted in instance-mode annotations.

    ``annotations`` is one 2D annotation or a list of them (each cell id ``>= 2`` of a plane is a
    cell; the same id on two planes counts twice). Cells cut by the plane border are left out
    unless no other cell is painted. Returns None when no cell is painted. Prediction scales
    its cell split and size filter with this figure (:func:`napari_unet.to_labels`).
    ``pixel_areas``: the area of one pixel of each plane in the pixels the diameter is given in
    (default 1 each; an XZ plane of a stack whose z-step is 4 times the pixel: 4).

    Examples
    --------
    >>> a = np.ones((40, 40), np.uint16); a[5:15, 5:15] = 2; a[20:30, 20:30] = 3
    >>> round(painted_cell_diameter(a), 2)  # a 10 x 10 square: 2 * sqrt(100 / pi)
    11.28
    """
    planes = [annotations] if isinstance(annotations, np.ndarray) else list(annotations)
    inner: list[float] = []
    cut: list[float] = []
    scales = [1.0] * len(planes) if pixel_areas is None else [float(a) for a in pixel_areas]
    if len(scales) != len(planes):
        raise ValueError(f"pixel_areas: one per plane ({len(planes)}), got {len(scales)}")
    for plane, scale in zip(planes, scales):
        plane = np.asarray(plane)
        if plane.ndim != 2 or not plane.size:
            raise ValueError(f"annotation planes must be 2D (Y, X), got shape {plane.shape}")
        cells = np.where(plane >= 2, plane, 0).astype(np.int64, copy=False)
        if not cells.any():
            continue
        ids, counts = np.unique(cells[cells > 0], return_counts=True)  # any ids, even >= 2**40
        border = set(np.unique(np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]])).tolist())
        for i, n in zip(ids.tolist(), counts.tolist()):
            (cut if i in border else inner).append(float(n) * scale)
    areas = inner or cut
    if not areas:
        return None
    return float(2.0 * math.sqrt(float(np.median(areas)) / math.pi))
