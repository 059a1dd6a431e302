"""Training data from sparse annotations: targets, annotated planes of stacks, and tile sampling.

Annotation convention (one label image per image, same shape, integers):

- ``0`` = not annotated: target 0, weight 0, mask False (the loss ignores it);
- ``1`` = background;
- instance mode: ``2, 3, ...`` = one id per cell (touching cells carry different ids)
  -> class 0 background, class 1 cell;
- class mode: ``1..K`` = classes (1 still background) -> annotation ``k`` is class ``k - 1``.

A complete ground-truth instance mask (0 = background) is converted explicitly with
:func:`instances_to_annotations`, never guessed.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage as ndi

from .config import MAX_CLASSES, AugmentConfig
from .normalization import apply_normalization, normalization_params
from .checks import check_integer_labels
from .weights import class_weight_values, weight_map

__all__ = [
    "Targets",
    "Batch",
    "make_targets",
    "insert_gaps",
    "cell_ring",
    "cell_borders",
    "instances_to_annotations",
    "painted_cell_diameter",
    "validate_annotations",
    "training_slices",
    "TileSampler",
]

logger = logging.getLogger(__name__)


class Targets(NamedTuple):
    """Per-pixel training targets of one 2D plane."""

    target: np.ndarray
    """(Y, X) int64 class index (0 where not annotated)."""
    weights: np.ndarray
    """(Y, X) float32 loss weight (0 where not annotated)."""
    mask: np.ndarray
    """(Y, X) bool: annotated pixels."""


class Batch(NamedTuple):
    """A batch of training tiles (torch tensors)."""

    image: "torch.Tensor"  # noqa: F821
    """(B, C, H, W) float32 network input."""
    target: "torch.Tensor"  # noqa: F821
    """(B, h, w) int64 classes of the network's output region."""
    weights: "torch.Tensor"  # noqa: F821
    """(B, h, w) float32 loss weights (0 = ignore)."""


# ----------------------------------------------------------------------------- annotations


def insert_gaps(annotations) -> np.ndarray:
    """Turn pixels where two different cells touch into background (a 1-pixel gap).

    A cell pixel (id >= 2) becomes background (1) when one of its 8 neighbours belongs to a
    cell with a larger id. Afterwards no two different cells are 8-connected neighbours, and the
    gap is one pixel wide (taken from the cell with the smaller id), as in the Fiji U-Net plugin.

    Examples
    --------
    >>> import numpy as np
    >>> ann = np.array([[2, 2, 3, 3]])
    >>> insert_gaps(ann).tolist()
    [[2, 1, 3, 3]]
    """
    ann = check_integer_labels(annotations)
    if ann.ndim != 2:
        raise ValueError(f"annotations must be 2D (Y, X), got shape {ann.shape}")
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
    user painted is never changed).

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
    return near & (ann == 0)


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
) -> Targets:
    """Class targets, loss weights and annotated mask of one 2D annotation.

    Parameters
    ----------
    annotations : (Y, X) int array
        See the module docstring for the convention.
    mode : "instances" or "classes"
    n_classes : int, optional
        Class mode: number of classes (default: the largest annotated id). Instance mode: 2.
    gap : bool
        Instance mode: first turn pixels where two cells touch into a 1-px background gap
        (:func:`insert_gaps`); the gap pixels are background with their weight-map value.
    w0, sigma, class_weights
        Passed to :func:`napari_unet.weights.weight_map` (class balance is computed on this
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

    Returns
    -------
    Targets(target int64, weights float32, mask bool), each (Y, X).
    """
    if mode not in ("instances", "classes"):
        raise ValueError(f'mode must be "instances" or "classes", got {mode!r}')
    ann = check_integer_labels(annotations)
    if ann.ndim != 2:
        raise ValueError(f"annotations must be 2D (Y, X), got shape {ann.shape}")
    if ann.size and ann.min() < 0:
        raise ValueError(f"annotations must not contain negative labels, got minimum {ann.min()}")
    mask = ann > 0
    if mode == "instances":
        expected = 3 if borders else 2
        if n_classes not in (None, expected):
            what = "background, cell, cell border" if borders else "background, cell"
            raise ValueError(f"instance mode has {expected} classes ({what}), got n_classes={n_classes}")
        labels = insert_gaps(ann) if gap else ann
        implied = cell_ring(labels, ring) if ring else None
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
        weights = class_part + weight_map(labels, w0=w0, sigma=sigma, class_weights=[0.0, 0.0], mode="instances")
        if ring_border and implied is not None and implied.any() and w0:
            d = ndi.distance_transform_edt(labels < 2)[implied]
            border = (w0 * np.exp(-((2.0 * d) ** 2) / (2.0 * sigma * sigma))).astype(np.float32)
            weights[implied] = np.maximum(weights[implied], class_part[implied] + border)
    else:
        top = int(ann.max()) if ann.size else 0
        if n_classes is not None and top > int(n_classes):
            raise ValueError(f"annotation holds class {top}, beyond n_classes={n_classes}")
        target = np.where(mask, ann.astype(np.int64) - 1, 0)
        cw = class_weights
        if isinstance(cw, str) or cw is None:
            weights = weight_map(ann, class_weights=cw, mode="classes")
        else:
            weights = weight_map(ann, class_weights=list(cw), mode="classes")
    weights = np.where(mask, weights, np.float32(0)).astype(np.float32, copy=False)
    return Targets(target, weights, mask)


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


def painted_cell_diameter(annotations) -> float | None:
    """Median equivalent diameter (pixels) of the cells painted in instance-mode annotations.

    ``annotations`` is one 2D annotation or a list of them (each cell id ``>= 2`` of a plane is a
    cell; the same id on two planes counts twice). Cells cut by the plane border are left out
    unless no other cell is painted. Returns None when no cell is painted. Prediction scales
    its cell split and size filter with this figure (:func:`napari_unet.to_labels`).

    Examples
    --------
    >>> a = np.ones((40, 40), np.uint16); a[5:15, 5:15] = 2; a[20:30, 20:30] = 3
    >>> round(painted_cell_diameter(a), 2)  # a 10 x 10 square: 2 * sqrt(100 / pi)
    11.28
    """
    planes = [annotations] if isinstance(annotations, np.ndarray) else list(annotations)
    inner: list[float] = []
    cut: list[float] = []
    for plane in planes:
        plane = np.asarray(plane)
        if plane.ndim != 2 or not plane.size:
            raise ValueError(f"annotation planes must be 2D (Y, X), got shape {plane.shape}")
        cells = np.where(plane >= 2, plane, 0).astype(np.int64, copy=False)
        if not cells.any():
            continue
        ids, counts = np.unique(cells[cells > 0], return_counts=True)  # any ids, even >= 2**40
        border = set(np.unique(np.concatenate([cells[0], cells[-1], cells[:, 0], cells[:, -1]])).tolist())
        for i, n in zip(ids.tolist(), counts.tolist()):
            (cut if i in border else inner).append(float(n))
    areas = inner or cut
    if not areas:
        return None
    return float(2.0 * math.sqrt(float(np.median(areas)) / math.pi))


def _default_axes(n_spatial_extra: int) -> str:
    if n_spatial_extra > 2:
        raise ValueError(f"cannot guess axes for {n_spatial_extra + 2} dimensions: pass axes, e.g. 'TZYX'")
    return "TZ"[2 - n_spatial_extra :] + "YX"


def resolve_axes(image_shape, ann_shape, axes: str | None) -> str:
    """Axes string of the image (containing "YX", maybe "C"), checked against the annotations."""
    image_shape, ann_shape = tuple(image_shape), tuple(ann_shape)
    if axes is not None:
        axes = str(axes).upper()
        if len(axes) != len(image_shape):
            raise ValueError(f"axes {axes!r} has {len(axes)} letters, the image {len(image_shape)} dimensions {image_shape}")
        if len(set(axes)) != len(axes) or not set(axes) <= set("TZCYXS") or not axes.endswith("YX") and not axes.endswith("YXC"):
            raise ValueError(f"axes must be distinct letters of T, Z, C, Y, X ending in 'YX' or 'YXC', got {axes!r}")
        expected = tuple(s for s, a in zip(image_shape, axes) if a != "C")
        if expected != ann_shape:
            raise ValueError(
                f"labels shape {ann_shape} does not match image shape {image_shape} (axes {axes!r}: expected labels {expected})"
            )
        return axes
    if len(image_shape) < 2:
        raise ValueError(f"image must be at least 2D, got shape {image_shape}")
    if image_shape == ann_shape:
        return _default_axes(len(image_shape) - 2)
    if len(image_shape) == len(ann_shape) + 1:
        candidates = [i for i in range(len(image_shape)) if image_shape[:i] + image_shape[i + 1 :] == ann_shape]
        candidates = [i for i in candidates if i < len(image_shape) - 2 or i == len(image_shape) - 1]
        if candidates:
            channel = min(candidates, key=lambda i: (image_shape[i], i))
            rest = _default_axes(len(ann_shape) - 2)
            if channel == len(image_shape) - 1:
                return rest + "C"
            return rest[:channel] + "C" + rest[channel:]
    raise ValueError(f"labels shape {ann_shape} does not match image shape {image_shape}")


def _annotation_list(annotations) -> list[np.ndarray]:
    if isinstance(annotations, (list, tuple)):
        return [np.asarray(a) for a in annotations]
    return [np.asarray(annotations)]


def validate_annotations(image, annotations=None, *, mode: str = "instances", n_classes: int | None = None, axes: str | None = None) -> int:
    """Check an annotation before training; raise ValueError / TypeError saying what is wrong.

    Checks: integer labels (TypeError for float or bool), shape against the image (naming both
    shapes), no negative labels, something annotated, class ids within ``n_classes`` (class mode),
    and at least two classes painted (instance mode: background 1 and at least one cell;
    class mode: two different classes).

    Parameters
    ----------
    image : array-like or None
        The image, or a list of images matching a list of annotations; None skips the shape check.
        Called with one positional argument (``validate_annotations(annotations, mode=...)``),
        that argument is taken as the annotations (an array or a list of arrays, e.g. every
        annotated plane) and only the labels are checked.
    annotations : array-like or list of arrays
        The labels; several arrays are checked together (classes may be spread over planes).
    mode : "instances" or "classes"
    n_classes : int, optional
        Class mode: the number of classes (default: the largest annotated id).
    axes : str, optional
        Image axes such as "ZCYX"; see :func:`training_slices`.

    Returns
    -------
    int: the number of classes the network needs (2 in instance mode).
    """
    if mode not in ("instances", "classes"):
        raise ValueError(f'mode must be "instances" or "classes", got {mode!r}')
    if annotations is None:
        image, annotations = None, image
    anns = _annotation_list(annotations)
    if not anns:
        raise ValueError("no annotations given")
    if image is not None:
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if len(images) != len(anns):
            raise ValueError(f"got {len(images)} images but {len(anns)} annotations")
        for img, ann in zip(images, anns):
            check_integer_labels(ann)
            resolve_axes(np.shape(img), ann.shape, axes)
    counts = np.zeros(2, dtype=np.int64)
    top = 0
    for ann in anns:
        check_integer_labels(ann)
        if ann.size == 0:
            continue
        low = int(ann.min())
        if low < 0:
            raise ValueError(f"annotations must not contain negative labels, got {low}")
        high = int(ann.max())
        if mode == "classes" and high > MAX_CLASSES:
            raise ValueError(f"annotations hold class {high}; class mode numbers classes 1..K with K at most "
                             f"{MAX_CLASSES} (for one id per cell use mode='instances')")
        if high >= counts.size:
            counts = np.pad(counts, (0, high + 1 - counts.size)) if mode == "classes" or high < 2**20 else counts
        if mode == "classes" or high < 2**20:
            counts += np.bincount(ann.ravel(), minlength=counts.size)[: counts.size]
        else:  # huge instance ids: only background / cell presence matters
            counts[1] += int(np.count_nonzero(ann == 1))
            counts = np.pad(counts, (0, max(0, 3 - counts.size)))
            counts[2] += int(np.count_nonzero(ann >= 2))
        top = max(top, high)
    if top == 0:
        raise ValueError(
            "the annotations are all 0 (nothing annotated): paint background (label 1) and "
            + ("cells (labels 2, 3, ...)" if mode == "instances" else "at least two classes (labels 1..K)")
        )
    if mode == "instances":
        if n_classes not in (None, 2, 3):
            raise ValueError(f"instance mode has 2 classes (background, cell) or 3 (and cell border), "
                             f"got n_classes={n_classes}")
        has_background = counts[1] > 0
        has_cells = counts[2:].sum() > 0
        if not (has_background and has_cells):
            missing = "background (label 1)" if not has_background else "cells (labels 2, 3, ...)"
            raise ValueError(f"only one class is painted: paint {missing} too")
        return 2
    if n_classes is not None and top > int(n_classes):
        raise ValueError(f"annotations hold class {top}, beyond n_classes={n_classes} (labels must be 1..{n_classes})")
    present = np.flatnonzero(counts[1:]) + 1
    if present.size < 2:
        raise ValueError(f"only one class is painted (label {int(present[0])}): paint at least two classes")
    return int(n_classes) if n_classes is not None else top


def training_slices(image, annotations, *, axes: str | None = None, normalization: dict | None = None, return_indices: bool = False):
    """Every annotated 2D plane of an image or stack, normalized, with its annotations.

    Parameters
    ----------
    image : array-like
        ``(Y, X)``, ``(C, Y, X)`` or a stack with leading axes (numpy, memmap, zarr, dask).
    annotations : array-like
        Integer labels of the image's shape without its channel axis.
    axes : str, optional
        Image axes, e.g. "YX", "CYX", "YXC", "ZYX", "TZYX", "ZCYX". Default: guessed -- no
        channel axis when image and annotations have the same shape (leading axes "Z", "TZ"),
        otherwise the axis that is missing from the annotations' shape (the smallest such).
    normalization : dict, optional
        Per-image percentile normalization, see :mod:`napari_unet.normalization` (None: the
        default, 1 and 99.8 percentiles; ``{"kind": "none"}``: none). The percentiles are taken
        over the whole image (all planes), per channel.
    return_indices : bool
        Also return, per plane, its index tuple into the non-channel leading axes.

    Returns
    -------
    list of ``(plane, annotations)``: plane ``(C, Y, X)`` float32, annotations ``(Y, X)``; planes
    without any annotated pixel are skipped. With ``return_indices``: ``(slices, indices)``.
    """
    ann = check_integer_labels(annotations)
    shape = tuple(np.shape(image))
    axes = resolve_axes(shape, ann.shape, axes)
    channel_axis = axes.index("C") if "C" in axes else None
    lows, highs = normalization_params(image, normalization, channel_axis=channel_axis)
    lead_axes = [i for i, a in enumerate(axes) if a not in "CYX"]
    lead_shape = tuple(shape[i] for i in lead_axes)
    out, indices = [], []
    for index in np.ndindex(*lead_shape):
        plane_ann = np.asarray(ann[index])
        if not plane_ann.any():
            continue
        key = [slice(None)] * len(shape)
        for axis, i in zip(lead_axes, index):
            key[axis] = i
        plane = np.asarray(image[tuple(key)])
        if channel_axis is None:
            plane = plane[None]
        elif axes.endswith("YXC"):
            plane = np.moveaxis(plane, -1, 0)
        plane = apply_normalization(plane, lows, highs, channel_axis=0 if lows is not None else None)
        out.append((np.ascontiguousarray(plane, dtype=np.float32), plane_ann))
        indices.append(tuple(int(i) for i in index))
    return (out, indices) if return_indices else out


# ----------------------------------------------------------------------------- tile sampling


def _reflect_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start+length-1`` mirrored into ``0 .. size-1`` (no edge repeat)."""
    idx = np.arange(start, start + length)
    if size == 1:
        return np.zeros(length, dtype=np.intp)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def _window(array: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """``array[..., y0:y0+h, x0:x0+w]`` with mirrored borders (a copy)."""
    ny, nx = array.shape[-2:]
    if y0 >= 0 and x0 >= 0 and y0 + h <= ny and x0 + w <= nx:
        return array[..., y0 : y0 + h, x0 : x0 + w].copy()
    iy = _reflect_indices(y0, h, ny)
    ix = _reflect_indices(x0, w, nx)
    return array[..., iy[:, None], ix[None, :]]


def _inside(start: int, length: int, size: int) -> np.ndarray:
    idx = np.arange(start, start + length)
    return (idx >= 0) & (idx < size)


class TileSampler:
    """Draws augmented training tiles around annotated pixels.

    Parameters
    ----------
    planes : list of (C, Y, X) float32 arrays
        Normalized image planes (see :func:`training_slices`); sizes may differ, and may be
        smaller than a tile (borders are mirrored).
    targets : list of Targets
        One per plane, same (Y, X).
    input_shape, output_shape : (int, int)
        The network's input tile and its output region (centred in the input; equal for
        "same" padding).
    augment : AugmentConfig or None
        Augmentation (None or ``enabled=False``: plain tiles).
    seed : int
        Seeds the tile positions (numpy) and the augmentation (torch.Generator).

    Notes
    -----
    Every tile is centred on a pixel with a positive weight, drawn uniformly among all such
    pixels of all planes: a plane counts in proportion to its annotated area (images of
    different sizes and annotation densities are weighted by what was painted, not by size).
    The output region therefore always contains annotated pixels (a tile whose augmentation
    moved them out is re-drawn, then taken without augmentation). Target and weights of output
    pixels outside the real image are set to weight 0 (mirrored context is for the image only).
    """

    def __init__(self, planes, targets, *, input_shape, output_shape, augment: AugmentConfig | None = None, seed: int = 0):
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = tuple(int(s) for s in output_shape)
        if len(self.input_shape) != 2 or len(self.output_shape) != 2:
            raise ValueError(f"input_shape and output_shape must be (Y, X), got {input_shape}, {output_shape}")
        if any(o > i or o < 1 for o, i in zip(self.output_shape, self.input_shape)):
            raise ValueError(f"output_shape {self.output_shape} must fit inside input_shape {self.input_shape}")
        if any((i - o) % 2 for o, i in zip(self.output_shape, self.input_shape)):
            raise ValueError(
                f"input_shape {self.input_shape} - output_shape {self.output_shape} must be even (the output is centred)"
            )
        self.augment = augment if (augment is not None and augment.enabled) else None
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        import torch

        self._generator = torch.Generator().manual_seed(self.seed)
        from .augment import geometric_margin

        self._margin = geometric_margin(self.augment, self.input_shape)
        self._split: dict | None = None  # see split_validation
        self._role = "all"  # "all", "train" (held-out pixels weigh 0) or "validation" (only they weigh)
        self._linked: list[TileSampler] = []
        self.set_data(planes, targets)

    # -- data

    def set_data(self, planes, targets) -> None:
        """Replace all planes and targets."""
        planes, targets = list(planes), list(targets)
        if len(planes) != len(targets):
            raise ValueError(f"got {len(planes)} planes but {len(targets)} targets")
        if not planes:
            raise ValueError("TileSampler needs at least one plane")
        self.planes = []
        self._targets: list[Targets] = []
        self._centres: list[np.ndarray] = []
        for i, (plane, t) in enumerate(zip(planes, targets)):
            self.planes.append(self._check_plane(i, plane))
            self._targets.append(None)
            self._centres.append(np.zeros(0, dtype=np.intp))
        for i, t in enumerate(targets):
            self._store(i, t)
        for other in self._linked:
            other.set_data(planes, targets)

    def set_targets(self, index, targets) -> None:
        """Swap in fresh targets of plane ``index`` (e.g. newly painted annotations).

        ``set_targets(planes, targets)`` with two lists replaces everything (as :meth:`set_data`).
        A validation sampler made by :meth:`split_validation` follows along, with the same
        held-out blocks.
        """
        if not isinstance(index, (int, np.integer)):
            self.set_data(index, targets)
            return
        if not 0 <= int(index) < len(self.planes):
            raise IndexError(f"plane index {index} out of range (0..{len(self.planes) - 1})")
        self._store(int(index), targets)
        for other in self._linked:
            other.set_targets(index, targets)

    def _check_plane(self, i, plane) -> np.ndarray:
        plane = np.asarray(plane, dtype=np.float32)
        if plane.ndim == 2:
            plane = plane[None]
        if plane.ndim != 3:
            raise ValueError(f"plane {i} must be (C, Y, X), got shape {plane.shape}")
        if self.planes and plane.shape[0] != self.planes[0].shape[0]:
            raise ValueError(f"plane {i} has {plane.shape[0]} channels, plane 0 has {self.planes[0].shape[0]}")
        return plane

    def _store(self, i: int, t: Targets) -> None:
        t = Targets(*t)
        shape = self.planes[i].shape[1:]
        for name, a in zip(Targets._fields, t):
            if np.shape(a) != shape:
                raise ValueError(f"targets {i}: {name} has shape {np.shape(a)}, the plane (Y, X) is {shape}")
        weights = np.asarray(t.weights, dtype=np.float32)
        if self._role != "all":
            held = self._holdout_mask(i)
            weights = np.where(held if self._role == "validation" else ~held, weights, np.float32(0))
        weights = weights.astype(np.float32, copy=False)
        self._targets[i] = Targets(np.asarray(t.target, dtype=np.int64), weights, np.asarray(t.mask, bool) & (weights > 0))
        self._centres[i] = np.flatnonzero(weights > 0)

    @property
    def n_annotated(self) -> int:
        """Number of pixels with a positive weight (possible tile centres)."""
        return int(sum(c.size for c in self._centres))

    @property
    def targets(self) -> list[Targets]:
        """The targets in use (held-out pixels weigh 0)."""
        return list(self._targets)

    # -- validation split

    def _block_ranks(self, i: int) -> np.ndarray:
        """Seeded random rank of every block x block square of plane ``i`` (shared by linked samplers)."""
        split = self._split
        block = split["block"]
        ny, nx = self.planes[i].shape[1:]
        shape = (math.ceil(ny / block), math.ceil(nx / block))
        grid = split["ranks"].get(i)
        if grid is None or grid.shape != shape:
            grid = np.random.default_rng([split["seed"], i]).random(shape)
            split["ranks"][i] = grid
        return grid

    def _holdout_mask(self, i: int) -> np.ndarray:
        block = self._split["block"]
        ny, nx = self.planes[i].shape[1:]
        held = self._block_ranks(i) <= self._split["threshold"]
        return np.repeat(np.repeat(held, block, 0), block, 1)[:ny, :nx]

    def split_validation(self, fraction: float = 0.1, seed: int = 0, *, block: int = 32) -> "TileSampler":
        """Hold out about ``fraction`` of the annotated pixels, in square blocks, for validation.

        The planes are cut into ``block`` x ``block`` squares with a seeded random rank each;
        the lowest-ranked squares holding annotations are held out until ``fraction`` of the
        annotated pixels is reached (at least one square, never all of them). This sampler then
        gives those pixels weight 0; the returned sampler (no augmentation) gives weight only to
        them. Both keep the split when :meth:`set_targets` brings new annotations (new squares
        are held out with the same random ranks), as long as it is called on this sampler.

        Typical use::

            val = sampler.split_validation(0.1, seed=0)
            val_batches = val.fixed_batches(max_tiles=16, batch_size=4)  # stable validation set
            ... loss on sampler.sample(4) / metrics on val_batches ...

        Returns
        -------
        TileSampler over the held-out pixels (``n_annotated == 0`` if nothing could be held out).
        """
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        if self._split is not None:
            raise ValueError("this sampler is already split")
        block = int(block)
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self._split = {"seed": int(seed), "block": block, "threshold": -1.0, "ranks": {}}
        ranks, counts, foreground = [], [], []
        for i, t in enumerate(self._targets):
            ny, nx = t.weights.shape
            grid = self._block_ranks(i)
            gy, gx = grid.shape
            pad = ((0, gy * block - ny), (0, gx * block - nx))
            annotated = np.pad(t.weights > 0, pad)
            per_block = annotated.reshape(gy, block, gx, block).sum((1, 3))
            fg = np.pad((t.weights > 0) & (t.target > 0), pad).reshape(gy, block, gx, block).any((1, 3))
            ranks.append(grid[per_block > 0])
            counts.append(per_block[per_block > 0])
            foreground.append(fg[per_block > 0])
        ranks_all, counts_all = np.concatenate(ranks), np.concatenate(counts)
        fg_all = np.concatenate(foreground)
        if ranks_all.size < 2:
            logger.warning("split_validation: all annotations lie in one %d px square; nothing held out", block)
        else:
            order = np.argsort(ranks_all)
            cumulative = np.cumsum(counts_all[order])
            k = int(np.argmin(np.abs(cumulative - float(fraction) * cumulative[-1])))  # closest to the fraction
            k = min(k, ranks_all.size - 2)  # keep at least one square for training
            # sparse annotations hold few cells: make sure validation sees some foreground too
            # (otherwise its IoU is undefined and "best by validation loss" only rewards background)
            if fg_all.sum() >= 2 and not fg_all[order[: k + 1]].any():
                first_fg = int(np.flatnonzero(fg_all[order])[0])
                if first_fg < ranks_all.size - 1:
                    k = first_fg
            self._split["threshold"] = float(ranks_all[order][k])
        targets = list(self._targets)
        val = TileSampler(
            self.planes, targets, input_shape=self.input_shape, output_shape=self.output_shape, augment=None, seed=seed
        )
        val._split, val._role = self._split, "validation"
        val.set_data(self.planes, targets)
        self._role = "train"
        self.set_data(self.planes, targets)  # also refreshes val (linked below: not yet)
        self._linked.append(val)
        return val

    # -- tiles

    def _extract(self, i: int, cy: int, cx: int, margin: int):
        """Image region (C, H+2m, W+2m) and target / weights regions for output centre (cy, cx)."""
        h_in, w_in = self.input_shape
        h_out, w_out = self.output_shape
        oy, ox = cy - h_out // 2, cx - w_out // 2  # output region origin in the plane
        y0 = oy - (h_in - h_out) // 2 - margin
        x0 = ox - (w_in - w_out) // 2 - margin
        h, w = h_in + 2 * margin, w_in + 2 * margin
        plane = self.planes[i]
        t = self._targets[i]
        image = _window(plane, y0, x0, h, w)
        if margin == 0:  # no augmentation: only the output region of target / weights is needed
            ty0, tx0, th, tw = oy, ox, h_out, w_out
        else:
            ty0, tx0, th, tw = y0, x0, h, w
        target = _window(t.target, ty0, tx0, th, tw)
        weights = _window(t.weights, ty0, tx0, th, tw)
        ny, nx = plane.shape[1:]
        inside_y, inside_x = _inside(ty0, th, ny), _inside(tx0, tw, nx)
        if not (inside_y.all() and inside_x.all()):
            weights = weights * (inside_y[:, None] & inside_x[None, :])
        return image, target, weights

    def _draw_centres(self, n: int):
        counts = np.array([c.size for c in self._centres], dtype=np.float64)
        total = counts.sum()
        if total == 0:
            raise ValueError("no annotated pixels to sample tiles from (all weights are 0)")
        planes = self._rng.choice(len(counts), size=n, p=counts / total)
        out = []
        for i in planes:
            flat = self._centres[i][self._rng.integers(self._centres[i].size)]
            cy, cx = divmod(int(flat), self.planes[i].shape[2])
            out.append((int(i), cy, cx))
        return out

    def sample(self, batch_size: int, device=None) -> Batch:
        """A batch of ``batch_size`` augmented tiles as torch tensors on ``device``.

        Returns
        -------
        Batch(image (B, C, H, W) float32, target (B, h, w) int64, weights (B, h, w) float32),
        ``(H, W) = input_shape``, ``(h, w) = output_shape``.
        """
        import torch

        from .augment import augment_batch

        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = torch.device("cpu") if device is None else torch.device(device)
        centres = self._draw_centres(batch_size)
        if self.augment is None:
            images, targets, weights = zip(*(self._extract(i, cy, cx, 0) for i, cy, cx in centres))
            return self._to_batch(images, targets, weights, device)
        regions = [self._extract(i, cy, cx, self._margin) for i, cy, cx in centres]
        images = torch.from_numpy(np.stack([r[0] for r in regions])).to(device)
        targets = torch.from_numpy(np.stack([r[1] for r in regions])).to(device)
        weights = torch.from_numpy(np.stack([r[2] for r in regions])).to(device)
        image, target, weight = augment_batch(
            images, targets, weights, self.augment, self._generator,
            out_shape=self.input_shape, target_shape=self.output_shape,
        )
        empty = (weight > 0).flatten(1).any(1).logical_not()
        for _attempt in range(3):
            if not bool(empty.any()):
                break
            idx = torch.nonzero(empty).flatten()
            ri, rt, rw = augment_batch(
                images[idx], targets[idx], weights[idx], self.augment, self._generator,
                out_shape=self.input_shape, target_shape=self.output_shape,
            )
            image[idx], target[idx], weight[idx] = ri, rt, rw
            empty = (weight > 0).flatten(1).any(1).logical_not()
        if bool(empty.any()):  # fall back to the plain tile, whose centre pixel is annotated
            for k in torch.nonzero(empty).flatten().tolist():
                i, cy, cx = centres[k]
                pi, pt, pw = self._extract(i, cy, cx, 0)
                image[k] = torch.from_numpy(pi).to(device)
                target[k] = torch.from_numpy(pt).to(device)
                weight[k] = torch.from_numpy(pw).to(device)
        return Batch(image.float().contiguous(), target.long().contiguous(), weight.float().contiguous())

    @staticmethod
    def _to_batch(images, targets, weights, device) -> Batch:
        import torch

        return Batch(
            torch.from_numpy(np.stack(images)).to(device, torch.float32),
            torch.from_numpy(np.stack(targets)).to(device, torch.int64),
            torch.from_numpy(np.stack(weights)).to(device, torch.float32),
        )

    def fixed_batches(self, max_tiles: int | None = 16, batch_size: int = 4, device=None) -> list[Batch]:
        """Deterministic, un-augmented tiles covering the annotated pixels (e.g. for validation).

        Each plane is cut into a grid of output-size tiles; those with annotated pixels are kept
        (at most ``max_tiles``, evenly spread over the list), with mirrored context around them.
        """
        h_out, w_out = self.output_shape
        tiles = []
        for i, t in enumerate(self._targets):
            ny, nx = t.weights.shape
            for oy in range(0, ny, h_out):
                for ox in range(0, nx, w_out):
                    if (t.weights[oy : oy + h_out, ox : ox + w_out] > 0).any():
                        tiles.append((i, oy + h_out // 2, ox + w_out // 2))
        if not tiles:
            return []
        if max_tiles is not None and len(tiles) > int(max_tiles):
            pick = np.linspace(0, len(tiles) - 1, int(max_tiles)).round().astype(int)
            tiles = [tiles[k] for k in pick]
        batches = []
        for start in range(0, len(tiles), int(batch_size)):
            parts = [self._extract(i, cy, cx, 0) for i, cy, cx in tiles[start : start + int(batch_size)]]
            images, targets, weights = zip(*parts)
            batches.append(self._to_batch(images, targets, weights, device or "cpu"))
        return batches
