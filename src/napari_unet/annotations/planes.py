"""Training data from sparse annotations: checks, annotated planes of stacks (and, re-exported
here, the targets of :mod:`napari_unet.annotations.targets` and the sampler of :mod:`napari_unet.dataset.sampler`).

The annotation convention (0 = not annotated, 1 = background, 2, 3, ... = cells or classes) is
set out in :mod:`napari_unet.annotations.targets`. A complete ground-truth instance mask (0 = background) is
converted explicitly with :func:`instances_to_annotations`, never guessed.
"""

from __future__ import annotations

import logging

import numpy as np

from ..common.axes import guess_axes
from ..common.checks import check_finite_image, check_integer_labels
from ..model.normalization import apply_normalization, normalization_params
from .rules import label_counts, painting_findings

__all__ = [
    "validate_annotations",
    "training_slices",
]

logger = logging.getLogger(__name__)


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
    return guess_axes(image_shape, labels_shape=ann_shape)


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
    counts, top = label_counts(anns, mode)
    if mode == "instances" and n_classes not in (None, 2, 3):
        raise ValueError(f"instance mode has 2 classes (background, cell) or 3 (and cell border), "
                         f"got n_classes={n_classes}")
    if mode == "classes" and n_classes is not None and top > int(n_classes):
        raise ValueError(f"annotations hold class {top}, beyond n_classes={n_classes} (labels must be 1..{n_classes})")
    errors = [f.message for f in painting_findings(counts, mode) if f.level == "error"]
    if errors:
        raise ValueError(" ".join(errors))
    if mode == "instances":
        return 2
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
        Per-image percentile normalization, see :mod:`napari_unet.model.normalization` (None: the
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
        check_finite_image(plane, f"the plane at {tuple(int(i) for i in index)}" if index else "the image")
        if channel_axis is None:
            plane = plane[None]
        elif axes.endswith("YXC"):
            plane = np.moveaxis(plane, -1, 0)
        plane = apply_normalization(plane, lows, highs, channel_axis=0 if lows is not None else None)
        out.append((np.ascontiguousarray(plane, dtype=np.float32), plane_ann))
        indices.append(tuple(int(i) for i in index))
    return (out, indices) if return_indices else out
