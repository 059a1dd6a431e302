"""What a painted annotation holds, and what stops it from training well (plain numpy).

The Annotate and Train widgets show these counts and messages; a script can call them too. The
rules are those training applies (:mod:`napari_unet.annotations.rules`), in the same words.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .rules import label_counts, painting_findings

__all__ = ["annotation_summary", "annotation_problems"]


def annotation_summary(annotations, mode: str = "instances") -> dict[str, Any]:
    """Counts shown by the Annotate widget: pixels, background pixels, cells/classes, slices."""
    data = np.asarray(annotations)
    annotated = data != 0
    n_annotated = int(np.count_nonzero(annotated))
    n_background = int(np.count_nonzero(data == 1))
    ids = np.unique(data[annotated]) if n_annotated else np.zeros(0, dtype=data.dtype)
    ids = ids[ids >= 2]
    if data.ndim > 2:
        per_slice = annotated.reshape(-1, data.shape[-2] * data.shape[-1]).any(axis=1)
        n_slices, total_slices = int(per_slice.sum()), int(per_slice.size)
    else:
        n_slices, total_slices = int(n_annotated > 0), 1
    return {
        "pixels": n_annotated,
        "background": n_background,
        "objects": int(ids.size),
        "ids": ids,
        "slices": n_slices,
        "total_slices": total_slices,
        "total_pixels": int(data.size),
    }


def annotation_problems(image_shape, annotations, mode: str = "instances", *, image_name: str = "image",
                        labels_name: str = "annotations") -> tuple[list[str], list[str]]:
    """What stops training (errors) and what makes it weak (warnings), in plain words.

    ``image_shape``: the image's shape without its channel axis; ``annotations``: the labels.

    Examples
    --------
    >>> a = np.zeros((8, 8), np.uint8); a[0] = 1; a[4:6, 4:6] = 2
    >>> annotation_problems((8, 8), a)
    ([], ['only 1 cell(s) painted: a few more make a much better model.'])
    """
    errors: list[str] = []
    warnings_: list[str] = []
    data = np.asarray(annotations)
    image_shape = tuple(int(s) for s in image_shape)
    if tuple(data.shape) != image_shape:
        errors.append(
            f"The annotations {labels_name!r} have shape {tuple(data.shape)} but the image "
            f"{image_name!r} has shape {image_shape}: they must match."
        )
        return errors, warnings_
    try:
        counts, _ = label_counts([data], mode)
    except (TypeError, ValueError) as exc:
        return [f"{labels_name!r}: {exc}"], warnings_
    for finding in painting_findings(counts, mode, repr(labels_name)):
        (errors if finding.level == "error" else warnings_).append(finding.message)
    return errors, warnings_
