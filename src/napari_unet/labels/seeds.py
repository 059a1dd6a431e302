"""The seeds of the distance split: the maxima of a surface that rise at least ``h`` above any
path to a higher one (h-dynamic maxima), found without sorting every pixel of the image.

``to_labels`` splits touching cells at the maxima of their smoothed distance transform that
:func:`dynamic_maxima` keeps; :func:`_cores` and :func:`_packed_maxima` make it fast and exact
(``tests/test_postprocess.py`` compares it with one reconstruction of the whole surface).
:func:`distance_to_background` is the distance transform the surface is made of.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["dynamic_maxima", "distance_to_background"]

#: surfaces up to this side (squared, cubed) find their maxima in one reconstruction
WHOLE_SURFACE_SIDE = 192
#: the width of the array the uncertain cores are packed in (_packed_maxima)
PACK_WIDTH = 1024
#: squared distances below this are exact integers in the float32 of the ``edt`` package
EXACT_SQUARED = 2**22


def distance_to_background(mask: np.ndarray, sampling=None) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt(mask, sampling=sampling)``, bit for bit, three times
    faster where it can be: the squared distances of the ``edt`` package (seung-lab's
    multi-label Euclidean distance transform, float32) are exact integers below
    :data:`EXACT_SQUARED`, and their float64 square roots are scipy's distances. Voxel sizes
    other than 1, masks without background and absurd distances take scipy's own transform
    (as does a platform without ``edt``).
    """
    if sampling is None or all(float(s) == 1.0 for s in np.atleast_1d(sampling)):
        try:
            import edt
        except ImportError:  # pragma: no cover - a platform without edt's wheels
            edt = None
        if edt is not None and mask.size and not mask.all():
            squared = edt.edtsq(np.ascontiguousarray(mask, dtype=np.uint8), black_border=False, parallel=1)
            if float(squared.max()) < EXACT_SQUARED:
                return np.sqrt(squared, dtype=np.float64)
    return ndi.distance_transform_edt(mask, sampling=sampling)


def dynamic_maxima(surface: np.ndarray, h: float) -> np.ndarray:
    """Maxima of ``surface`` that rise more than ``h`` above any path to a higher one, as masks.

    The regional maxima of the reconstruction by dilation of ``surface - h`` under ``surface``:
    two peaks joined by a saddle less than ``h`` below them share one flat top there and give
    one marker. (``skimage.morphology.h_maxima`` marks both of two *equal* peaks, however
    shallow the saddle, which splits a symmetric cell in two.)
    """
    from skimage.morphology import local_maxima, reconstruction

    surface = surface.astype(np.float64, copy=False)
    if surface.size <= WHOLE_SURFACE_SIDE ** surface.ndim or surface.min() < 0:
        rec = reconstruction(surface - h, surface, method="dilation")
        return local_maxima(rec, connectivity=surface.ndim, allow_borders=True)
    # Pieces of the surface that zeros separate (8- / 26-connected) do not change each other's
    # maxima: the reconstruction crosses a zero only at or below zero. Within a piece, nothing
    # under c = (its lowest regional maximum) - h changes either: such a pixel is reconstructed
    # as itself, is in no marker, and caps what crosses it below c, where every pixel above gets
    # at least c from a peak of its own. So each core of a piece above its c stands alone
    # (_cores). A core with one peak has one marker, where it is within h of that peak (all its
    # upper level sets are connected): no reconstruction. The cores with two or more peaks (a
    # saddle less than h below the lower one: the uncertain cases) are reconstructed together,
    # packed side by side in one array (_packed_maxima), so the sort at the heart of
    # `reconstruction` sees their pixels, not the cells' flanks nor the background (the same
    # maxima, tests/test_postprocess.py).
    pieces, n, single, top = _cores(surface, h)
    found = surface >= np.where(single, top - h, np.inf)[pieces]
    multi = np.flatnonzero(~single[1:]) + 1
    if multi.size:
        found |= _packed_maxima(surface, pieces, multi, h)
    return found


def _packed_maxima(surface: np.ndarray, cores: np.ndarray, ids: np.ndarray, h: float) -> np.ndarray:
    """The maxima of the reconstruction of ``surface - h`` under ``surface`` on the ``cores`` of
    ``ids``, each alone: their boxes, a zero margin around each, packed side by side in one array
    (:func:`_packed`), so that one reconstruction sorts their pixels and few others."""
    from skimage.morphology import local_maxima, reconstruction

    boxes = ndi.find_objects(cores)
    boxes = [boxes[i - 1] for i in ids]
    extents = np.array([[s.stop - s.start + 2 for s in box] for box in boxes])  # with the margins
    offsets = _packed(extents)
    canvas = np.zeros(tuple((offsets + extents).max(axis=0)))
    spots = []
    for j, box in enumerate(boxes):
        spot = tuple(slice(o + 1, o + e - 1) for o, e in zip(offsets[j], extents[j]))
        inside = cores[box] == ids[j]
        canvas[spot] = np.where(inside, surface[box], 0.0)
        spots.append((box, spot, inside))
    peaks = local_maxima(reconstruction(canvas - h, canvas, method="dilation"), connectivity=surface.ndim,
                         allow_borders=True)
    found = np.zeros(surface.shape, bool)
    for box, spot, inside in spots:
        found[box] |= peaks[spot] & inside
    return found


def _packed(extents: np.ndarray) -> np.ndarray:
    """Where boxes of ``extents`` (n, ndim) go in one array, without overlap: side by side along
    the last axis in rows PACK_WIDTH long, rows stacked along the axis before; in 3D, rows in
    slabs as high as they are wide, slabs stacked along z. Deepest and tallest first, so that the
    boxes of one row (slab) are alike and waste little."""
    ndim = extents.shape[1]
    width = max(PACK_WIDTH, int(extents[:, -1].max()))
    height = max(width, int(extents[:, -2].max())) if ndim == 3 else None
    offsets = np.zeros_like(extents)
    slab = slab_depth = row = row_height = x = 0
    for j in np.lexsort(extents[:, ::-1].T)[::-1]:
        depth, tall, wide = (int(v) for v in extents[j, -3:]) if ndim == 3 else (0, *(int(v) for v in extents[j]))
        if x + wide > width:  # the next row
            row, x, row_height = row + row_height, 0, 0
        if height is not None and row + tall > height:  # the next slab
            slab, slab_depth, row, x, row_height = slab + slab_depth, 0, 0, 0, 0
        offsets[j, -1], offsets[j, -2] = x, row
        if ndim == 3:
            offsets[j, -3] = slab
            slab_depth = max(slab_depth, depth)
        x += wide
        row_height = max(row_height, tall)
    return offsets


def _cores(surface: np.ndarray, h: float) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """The parts of ``surface > 0`` that the maxima of :func:`dynamic_maxima` depend on,
    labelled 1..n (8- / 26-connected): in each piece of ``surface > 0``, where the surface is at
    least its lowest regional maximum less ``h`` (the whole piece when that is not above 0).
    Also, per core id (index 0 unused): whether it holds one regional maximum, and its top."""
    from skimage.morphology import local_maxima

    full = np.ones((3,) * surface.ndim, bool)
    pieces, n = ndi.label(surface > 0, structure=full)
    peaks = local_maxima(surface, connectivity=surface.ndim, allow_borders=True) & (pieces > 0)
    level = np.full(n + 1, np.inf)
    np.minimum.at(level, pieces[peaks], surface[peaks] - h)
    level = np.maximum(level, 0.0)  # a piece lower than h: all of it (> 0)
    level[0] = np.inf
    cores, n = ndi.label((surface >= level[pieces]) & (surface > 0), structure=full)
    plateaus, _ = ndi.label(peaks, structure=full)  # a peak may be flat: count plateaus, not pixels
    pairs = np.unique(np.stack([cores[peaks], plateaus[peaks]]), axis=1)
    top = np.full(n + 1, -np.inf)
    np.maximum.at(top, cores[peaks], surface[peaks])
    # one peak, at least h high (a lower piece's maxima depend on the zeros around it)
    single = (np.bincount(pairs[0], minlength=n + 1) == 1) & (top - h > 0)
    single[0] = False
    return cores, n, single, top
