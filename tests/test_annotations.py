"""The annotation counts and checks the Annotate and Train widgets show (core, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.annotations.summary import annotation_problems, annotation_summary


def _painting():
    a = np.zeros((2, 20, 20), np.uint16)  # a stack: plane 1 painted, plane 0 not
    a[1, 0:2, :] = 1
    a[1, 5:8, 5:8] = 2
    a[1, 10:13, 10:13] = 7
    return a


def test_summary_counts_pixels_cells_and_slices():
    s = annotation_summary(_painting())
    assert (s["pixels"], s["background"], s["objects"]) == (40 + 9 + 9, 40, 2)
    assert list(s["ids"]) == [2, 7] and (s["slices"], s["total_slices"]) == (1, 2)
    assert s["total_pixels"] == 800


def test_problems_say_what_stops_training():
    a = _painting()
    errors, warnings_ = annotation_problems((2, 20, 20), a, image_name="img", labels_name="img annotations")
    assert errors == [] and warnings_ == ["only 2 cell(s) painted: a few more make a much better model."]
    errors, _ = annotation_problems((2, 21, 20), a, image_name="img", labels_name="ann")
    assert errors == ["The annotations 'ann' have shape (2, 20, 20) but the image 'img' has shape (2, 21, 20): they must match."]
    errors, _ = annotation_problems((2, 20, 20), np.zeros_like(a), labels_name="ann")
    assert errors and "is empty" in errors[0]
    no_background = np.where(a == 1, 0, a)
    errors, _ = annotation_problems((2, 20, 20), no_background, labels_name="ann")
    assert errors == ["'ann' has no background (label 1): paint some background too."]
    only_background = np.where(a >= 2, 0, a)
    errors, _ = annotation_problems((2, 20, 20), only_background, labels_name="ann")
    assert errors == ["'ann' has background only: paint at least one cell (label 2 or more)."]


def test_class_mode_needs_two_classes():
    a = np.zeros((10, 10), np.uint8)
    a[:3] = 2
    errors, _ = annotation_problems((10, 10), a, "classes", labels_name="ann")
    assert errors == ["'ann' has one class only (2): paint at least two classes."]
    a[5:] = 1
    assert annotation_problems((10, 10), a, "classes") == ([], [])


@pytest.mark.parametrize("mode, painting", [
    ("instances", {}),  # nothing painted
    ("instances", {1: (0, slice(None))}),  # background only
    ("instances", {2: (slice(2, 4), slice(2, 4))}),  # cells only
    ("classes", {2: (slice(2, 4), slice(2, 4))}),  # one class
])
def test_training_refuses_a_painting_in_the_words_the_widgets_show(mode, painting):
    # one rule list: what the Annotate and Train widgets report is what training raises
    from napari_unet.annotations.planes import validate_annotations

    ann = np.zeros((8, 8), np.uint8)
    for label, where in painting.items():
        ann[where] = label
    errors, _ = annotation_problems((8, 8), ann, mode, labels_name="ann")
    assert len(errors) == 1
    with pytest.raises(ValueError) as raised:
        validate_annotations(ann, mode=mode)
    assert str(raised.value) == errors[0].replace("'ann'", "the painting")
