"""Loss weight maps: class balance plus the touching-cell border term of the U-Net paper.

Ronneberger et al. (2015), eq. 2: on background pixels

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

with ``d1`` / ``d2`` the Euclidean distances from ``x`` to the nearest and to the second-nearest
cell (the distance to that cell's nearest pixel, measured between pixel centres). Cell pixels
weigh ``w_c``; unannotated pixels weigh 0.

Speed: the border term is below ``_EPS`` once ``d1 + d2 > sigma * sqrt(2 ln(w0 / _EPS))``
(about 5.7 sigma for w0 = 10), so a cell only matters within that cutoff. :func:`weight_map`
computes each cell's exact distance transform on its bounding box grown by the cutoff and keeps
running nearest / second-nearest minima; this is exact wherever the term exceeds ``_EPS`` and
off by at most ``_EPS`` elsewhere. :func:`_weight_map_reference` is the slow, literal version
(one full-image distance transform per cell) that tests and benchmarks compare against.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..common.checks import check_integer_labels

__all__ = ["weight_map", "fiji_weight_map", "class_weight_values", "border_sigma"]

# largest border-term value that is dropped by the cutoff (absolute)
_EPS = 1e-6

def border_sigma(sigma: float, cell_diameter: float | None, per_diameter: float | None) -> float:
    """Width of the border term for painted cells ``cell_diameter`` pixels wide
    (``per_diameter``: ``TrainConfig.sigma_per_diameter``, 0.25 by default).

    ``sigma`` (the paper's 5 px) for cells of ``sigma / per_diameter`` pixels (20 px) and more;
    for smaller cells ``per_diameter`` times their diameter, at least 1 px: between two touching
    cells 10 px wide a 5 px term weighs both cells whole, a narrower one stresses the gap between
    them. ``cell_diameter`` or ``per_diameter`` None (or 0) keeps ``sigma``.

    Examples
    --------
    >>> [border_sigma(5.0, d, 0.25) for d in (40.0, 10.0, 2.0, None)]
    [5.0, 2.5, 1.0, 5.0]
    """
    if not per_diameter or not cell_diameter:
        return float(sigma)
    return float(min(float(sigma), max(1.0, float(per_diameter) * float(cell_diameter))))


def _check_labels(annotations, name: str = "annotations") -> np.ndarray:
    ann = check_integer_labels(annotations, name)
    if ann.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2D (Y, X) or a painted volume (Z, Y, X), got shape {ann.shape}")
    if ann.size and ann.min() < 0:
        raise ValueError(f"{name} must not contain negative labels, got minimum {ann.min()}")
    return ann


def _check_mode(mode: str) -> None:
    if mode not in ("instances", "classes"):
        raise ValueError(f'mode must be "instances" or "classes", got {mode!r}')


def _class_map(ann: np.ndarray, mode: str) -> tuple[np.ndarray, int]:
    """Class index per pixel (only meaningful where ann > 0) and the number of classes."""
    if mode == "instances":
        return (ann >= 2).astype(np.intp), 2
    cls = ann.astype(np.intp) - 1
    return cls, max(int(ann.max()) if ann.size else 0, 2)


def class_weight_values(counts: Sequence[int], class_weights="balanced") -> np.ndarray:
    """Per-class weights ``w_c`` from per-class pixel counts of the annotated pixels.

    ``None``: all 1. ``"balanced"``: ``N / (K * n_k)`` for the K classes present (N annotated
    pixels, ``n_k`` of class k), so the mean weight over the annotated pixels is 1 and every
    present class carries the same total weight; classes not present get 1 (they have no pixels).
    A sequence: one weight per class, used as given.
    """
    counts = np.asarray(counts, dtype=np.float64)
    n_classes = len(counts)
    if class_weights is None:
        return np.ones(n_classes)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f'class_weights must be "balanced", None or a sequence, got {class_weights!r}')
        present = counts > 0
        out = np.ones(n_classes)
        if present.any():
            out[present] = counts[present].sum() / (present.sum() * counts[present])
        return out
    values = np.asarray(class_weights, dtype=np.float64).ravel()
    if values.size < n_classes:
        raise ValueError(f"class_weights needs one weight per class ({n_classes}), got {values.size}: {class_weights!r}")
    if np.any(values < 0) or not np.all(np.isfinite(values)):
        raise ValueError(f"class_weights must be finite and >= 0, got {class_weights!r}")
    return values[:n_classes] if values.size > n_classes else values


def _class_weight_image(ann: np.ndarray, mode: str, class_weights) -> np.ndarray:
    cls, n_classes = _class_map(ann, mode)
    annotated = ann > 0
    if isinstance(class_weights, (list, tuple, np.ndarray)):
        n_classes = max(n_classes, len(class_weights))
        if mode == "classes" and ann.size and int(ann.max()) > len(class_weights):
            raise ValueError(
                f"class_weights has {len(class_weights)} weights but the annotations hold class {int(ann.max())}"
            )
    counts = np.bincount(cls[annotated], minlength=n_classes)
    values = class_weight_values(counts, class_weights).astype(np.float32)
    out = np.zeros(ann.shape, dtype=np.float32)
    out[annotated] = values[cls[annotated]]
    return out


def _cutoff(w0: float, sigma: float, eps: float = _EPS) -> float:
    """Distance d1 + d2 beyond which ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) < eps``."""
    if w0 <= eps:
        return 0.0
    return float(sigma * math.sqrt(2.0 * math.log(w0 / eps)))


def _cell_labels(ann: np.ndarray) -> np.ndarray:
    """Cells (ids >= 2) as a label image for ``find_objects`` (other pixels 0), compact ids."""
    cells = np.where(ann >= 2, ann, 0)
    top = int(cells.max()) if cells.size else 0
    if top > 4 * cells.size + 1024:  # sparse huge ids: relabel so find_objects stays small
        ids, inverse = np.unique(cells, return_inverse=True)
        cells = inverse.reshape(cells.shape).astype(np.int64)
        if ids[0] != 0:
            cells += 1
    return cells


def _feature_transform(outside: np.ndarray, sampling=None) -> np.ndarray:
    """(ndim, *shape) int32 indices of the nearest False pixel of ``outside`` (scipy's EDT core);
    ``sampling``: the pixel's size along each axis, None for square pixels."""
    ft = np.empty((outside.ndim,) + outside.shape, dtype=np.int32)
    if _nd_feature_transform is not None:
        try:
            _nd_feature_transform(outside.view(np.int8), None if sampling is None else np.asarray(sampling, np.float64), ft)
            return ft
        except Exception:  # pragma: no cover - a scipy whose private helper changed
            pass
    ndi.distance_transform_edt(outside, sampling=sampling, return_distances=False, return_indices=True, indices=ft)
    return ft


try:  # scipy's C feature transform without the wrapper's copies (~30 % faster on small crops)
    from scipy.ndimage._nd_image import euclidean_feature_transform as _nd_feature_transform
except ImportError:  # pragma: no cover
    _nd_feature_transform = None


def two_nearest_distances(cells: np.ndarray, cutoff: float, spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the nearest and second-nearest labelled region (labels > 0 of ``cells``).

    Exact (float32) wherever the true distance is below ``cutoff``; elsewhere a value >=
    ``cutoff`` (``inf`` where no region is within the cutoff). float32 arrays of ``cells.shape``
    (a plane or a volume). Each region's exact Euclidean distance transform is computed on its
    bounding box grown by ``cutoff`` only, and merged into running nearest / second-nearest minima.
    ``spacing``: the pixel's size along each axis in the unit of the distances (None: all 1).
    """
    cells = np.asarray(cells)
    shape = cells.shape
    d1 = np.full(shape, np.inf, dtype=np.float32)
    d2 = np.full(shape, np.inf, dtype=np.float32)
    sizes = (1.0,) * cells.ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(sizes) != cells.ndim:
        raise ValueError(f"spacing needs one size per axis of a {cells.ndim}D array, got {spacing}")
    if min(sizes, default=1.0) <= 0 or not math.isfinite(math.prod(sizes)):
        raise ValueError(f"spacing must be positive and finite, got {spacing}")
    square = all(s == 1.0 for s in sizes)
    margins = [int(math.ceil(cutoff / s)) for s in sizes]
    ramp = np.arange(max(shape) if shape else 0, dtype=np.int32)
    for index, box in enumerate(ndi.find_objects(cells)):
        if box is None:
            continue
        label = index + 1
        lo = [max(0, b.start - m) for b, m in zip(box, margins)]
        hi = [min(n, b.stop + m) for n, b, m in zip(shape, box, margins)]
        window = tuple(slice(a, b) for a, b in zip(lo, hi))
        ft = _feature_transform(cells[window] != label, None if square else sizes)
        wide = square and cells.ndim * max(b - a for a, b in zip(lo, hi)) ** 2 >= 2**31  # squares beyond int32
        total = None
        for axis, (a, b) in enumerate(zip(lo, hi)):
            d = ft[axis] - ramp[: b - a].reshape([-1 if i == axis else 1 for i in range(cells.ndim)])
            if not square:  # float distances
                d = d * sizes[axis]
            elif wide:
                d = d.astype(np.int64)
            d *= d
            total = d if total is None else np.add(total, d, out=total)
        dist = np.sqrt(total, dtype=np.float32)
        m1 = d1[window]
        m2 = d2[window]
        # second smallest of {m1 <= m2, dist}, then the smallest
        np.minimum(m2, np.maximum(m1, dist), out=m2)
        np.minimum(m1, dist, out=m1)
    return d1, d2


def _border_term(ann: np.ndarray, w0: float, sigma: float, spacing=None) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels (label 1), 0 elsewhere."""
    out = np.zeros(ann.shape, dtype=np.float32)
    if w0 == 0:
        return out
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    cells = _cell_labels(ann)
    background = ann == 1
    if not background.any():
        return out
    cutoff = _cutoff(abs(w0), sigma)
    d1, d2 = two_nearest_distances(cells, cutoff, spacing)
    total = np.add(d1, d2, out=d1)  # inf with fewer than two cells in reach
    near = background & (total < cutoff)
    t = total[near].astype(np.float64)
    out[near] = (w0 * np.exp(-(t * t) / (2.0 * sigma * sigma))).astype(np.float32)
    return out


def weight_map(annotations, *, w0: float = 10.0, sigma: float = 5.0, class_weights="balanced", mode: str = "instances",
               spacing=None) -> np.ndarray:
    """Per-pixel loss weights of a 2D annotation, or of a painted volume (Ronneberger et al. 2015,
    eq. 2).

    Parameters
    ----------
    annotations : (Y, X) or (Z, Y, X) int array
        0 = not annotated, 1 = background; instance mode: 2, 3, ... = one id per cell; class mode:
        1..K = classes. Used exactly as given (no gaps are inserted: see
        :func:`napari_unet.annotations.targets.make_targets` for that).
    spacing : (height, width) or (depth, height, width), optional
        The pixel's size in the unit of ``sigma`` when it is not square: an XZ plane of a stack has
        pixels of z-step x pixel, so its distances (and ``sigma``) count in XY pixels with
        ``spacing=(dz / dx, 1)``; a painted volume's voxels ``(dz / dx, 1, 1)``. None: square pixels.
    w0 : float
        Height of the border term between touching cells (the paper: 10). 0 switches it off.
    sigma : float
        Width of the border term in pixels (the paper: about 5).
    class_weights : "balanced", None or sequence
        ``w_c``: "balanced" = ``N / (K n_k)`` over the annotated pixels (K classes present, N
        annotated pixels, n_k of class k); None = 1 for every class; a sequence = one weight per
        class (instance mode: [background, cell]; class mode: [class 1, class 2, ...]).
    mode : "instances" or "classes"
        In class mode the border term is not applied (classes are not instances: there is no
        "second-nearest cell"); the weights are the class weights alone.

    Returns
    -------
    float32 of the annotations' shape
        Background (label 1): ``w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` with d1, d2 the
        Euclidean distances (pixel centres) to the nearest pixel of the nearest and of the
        second-nearest cell; the exp term is 0 with fewer than two cells. Cell pixels: ``w_c``.
        Unannotated pixels: 0. Exact to 1e-6 (terms below that are dropped).

    Examples
    --------
    >>> import numpy as np
    >>> ann = np.ones((5, 7), np.uint16)
    >>> ann[:, :2] = 2
    >>> ann[:, 5:] = 3
    >>> w = weight_map(ann, w0=10, sigma=5, class_weights=None)
    >>> round(float(w[2, 3]), 4)  # d1 = d2 = 2: 1 + 10 exp(-16 / 50)
    8.2615
    """
    _check_mode(mode)
    ann = _check_labels(annotations)
    out = _class_weight_image(ann, mode, class_weights)
    if mode == "instances":
        out += _border_term(ann, float(w0), float(sigma), spacing)
    return out


def fiji_weight_map(
    annotations,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    r: float = 0.1,
    sigma1: float = 10.0,
    class_weights=None,
    mode: str = "instances",
) -> np.ndarray:
    """Weight map with the background decay of the Fiji U-Net plugin (Falk et al. 2019).

    Instead of a constant background class weight, background pixels far from every cell count
    less, so that large empty areas do not dominate the loss:

    - background (label 1): ``c_bg * (r + (1 - r) exp(-d1^2 / (2 sigma1^2))) + w0 exp(-(d1 + d2)^2 / (2 sigma^2))``
    - cell pixels (instance mode) / classes >= 2 (class mode): ``c_k``
    - unannotated (0): 0

    with d1, d2 as in :func:`weight_map` (d1 = distance to the nearest cell, infinite without
    cells, so the decay term is ``r``), ``c_k`` the class weights (default None = 1, since the
    decay already balances background against cells). In class mode "cells" are all pixels of
    classes >= 2 (annotations >= 2), d1 is measured to them, and the ``w0`` term is not applied.

    Returns
    -------
    (Y, X) float32
    """
    _check_mode(mode)
    ann = _check_labels(annotations)
    if sigma1 <= 0:
        raise ValueError(f"sigma1 must be > 0, got {sigma1}")
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"r must be in [0, 1], got {r}")
    out = _class_weight_image(ann, mode, class_weights)
    background = ann == 1
    cell = ann >= 2
    if background.any():
        if cell.any():
            d1 = ndi.distance_transform_edt(~cell)[background]
            decay = r + (1.0 - r) * np.exp(-(d1 * d1) / (2.0 * sigma1 * sigma1))
        else:
            decay = np.full(int(background.sum()), r)
        out[background] *= decay.astype(np.float32)
    if mode == "instances":
        out += _border_term(ann, float(w0), float(sigma))
    return out


def _weight_map_reference(annotations, *, w0: float = 10.0, sigma: float = 5.0, class_weights="balanced", mode: str = "instances") -> np.ndarray:
    """Slow literal :func:`weight_map`: one full-image distance transform per cell (for tests)."""
    _check_mode(mode)
    ann = _check_labels(annotations)
    out = _class_weight_image(ann, mode, class_weights).astype(np.float64)
    if mode != "instances" or w0 == 0:
        return out.astype(np.float32)
    ids = np.unique(ann[ann >= 2])
    d1 = np.full(ann.shape, np.inf)
    d2 = np.full(ann.shape, np.inf)
    for cell_id in ids:
        dist = ndi.distance_transform_edt(ann != cell_id)
        d2 = np.minimum(d2, np.maximum(d1, dist))
        d1 = np.minimum(d1, dist)
    background = ann == 1
    if len(ids) >= 2:
        total = d1 + d2
        out[background] += w0 * np.exp(-(total[background] ** 2) / (2.0 * sigma * sigma))
    return out.astype(np.float32)
