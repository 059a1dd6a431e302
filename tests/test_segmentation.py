"""Labels as Predict makes them: one function for the widgets, the CLI, the demo and the benchmarks."""

import numpy as np
import pytest

from napari_unet import UNet, to_labels
from napari_unet.labels.large_cells import add_large_cells, predict_half_scale
from napari_unet.labels.options import LabelOptions
from napari_unet.labels.segment import LARGE_CELLS_SHARE, iter_segment, segment, segment_options
from napari_unet.predict.tiling import predict_stack


@pytest.fixture
def model():
    net = UNet(depth=2, base_channels=4).eval()
    net.metadata = {"mode": "instances", "cell_diameter": 6.0, "cell_diameter_um": 3.0}
    return net


def _steps(gen):
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        return steps, stop.value


def test_labels_are_the_full_scale_labels_with_the_half_scale_pass_and_one_bar(model):
    image = np.random.default_rng(1).random((2, 48, 56), dtype=np.float32)
    steps, (probabilities, labels) = _steps(iter_segment(model, image, axes="ZYX", tta=2))
    options = segment_options(model)
    expected_p = predict_stack(model, image, axes="ZYX", tta=2)
    expected = add_large_cells(to_labels(expected_p, **options),
                               predict_half_scale(model, image, axes="ZYX", tta=2), **options)
    np.testing.assert_array_equal(probabilities, expected_p)
    np.testing.assert_array_equal(labels, expected)
    fractions = [done / total for done, total in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # one bar that never jumps back
    assert any(f > 1 - LARGE_CELLS_SHARE for f in fractions[:-1])  # the half-scale pass has its part of it


def test_without_the_pass_or_a_known_diameter_the_labels_are_to_labels(model):
    image = np.random.default_rng(2).random((40, 40), dtype=np.float32)
    probabilities, labels = segment(model, image, axes="YX", large_cells=False)
    np.testing.assert_array_equal(labels, to_labels(probabilities, **segment_options(model)))
    model.metadata = {"mode": "instances"}  # no painted cells known: the pass does not apply
    steps, (probabilities, labels) = _steps(iter_segment(model, image, axes="YX"))
    np.testing.assert_array_equal(labels, to_labels(probabilities, mode="instances"))
    assert steps[-1] == (1000, 1000)


def test_probabilities_can_be_freed_for_a_large_stack(model):
    image = np.random.default_rng(3).random((40, 40), dtype=np.float32)
    probabilities, labels = segment(model, image, axes="YX", keep_probabilities=False)
    assert probabilities is None
    np.testing.assert_array_equal(labels, segment(model, image, axes="YX")[1])


def test_options_for_one_image(model):
    assert segment_options(model) == LabelOptions(mode="instances", cell_diameter=6.0)
    assert segment_options(model, "classes", cell_diameter=9) == LabelOptions(mode="classes")
    assert segment_options(model, cell_diameter=9)["cell_diameter"] == 9.0  # typed by the user
    # pixels of 0.25 um: the 3 um cells the model learnt are 12 of them
    space = {"z": 1.0, "y": 0.25, "x": 0.25}
    assert segment_options(model, space=space)["cell_diameter"] == 12.0
    three_d = segment_options(model, space=space, three_d=True, axes="ZYX")
    assert three_d["three_d"] and three_d["spacing"] == (1.0, 0.25, 0.25)
    assert not segment_options(model, space=space, three_d=True, axes="YX").three_d  # a plane has no 3D objects
