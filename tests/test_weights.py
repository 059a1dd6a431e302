import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.annotations.targets import instances_to_annotations
from napari_unet.annotations.weights import _weight_map_reference, fiji_weight_map, two_nearest_distances, weight_map
from napari_unet.samples import make_touching_cells


def _touching_annotations(seed, shape=(96, 112), sparse=False):
    _, instances, annotations = make_touching_cells(shape, seed=seed, mean_radius=7.0, density=0.55)
    return annotations.astype(np.int32) if sparse else instances_to_annotations(instances).astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("class_weights", ["balanced", None, (0.5, 2.0)])
def test_matches_slow_reference_on_touching_cells(seed, class_weights):
    ann = _touching_annotations(seed)
    assert ann.max() > 30
    fast = weight_map(ann, w0=10, sigma=5, class_weights=class_weights)
    slow = _weight_map_reference(ann, w0=10, sigma=5, class_weights=class_weights)
    assert fast.dtype == np.float32 and fast.shape == ann.shape
    assert np.abs(fast - slow).max() <= 1e-4
    # the border term matters here: many background pixels well above w_c
    bg = ann == 1
    assert (fast[bg] - fast[bg].min() > 1.0).sum() > 50


@pytest.mark.parametrize("w0,sigma", [(10.0, 5.0), (50.0, 3.0), (5.0, 12.0)])
def test_matches_reference_with_sparse_annotations_and_other_parameters(w0, sigma):
    ann = _touching_annotations(5, shape=(80, 90), sparse=True)
    # unannotated holes inside the image and a few extra painted cells
    fast = weight_map(ann, w0=w0, sigma=sigma)
    slow = _weight_map_reference(ann, w0=w0, sigma=sigma)
    assert np.abs(fast - slow).max() <= 1e-4


def test_hand_checked_two_cells():
    ann = np.ones((7, 9), np.uint8)
    ann[3, 1] = 2  # single-pixel cells
    ann[3, 7] = 3
    w = weight_map(ann, w0=10, sigma=5, class_weights=None)
    # midpoint (3, 4): d1 = d2 = 3
    assert w[3, 4] == pytest.approx(1 + 10 * math.exp(-36 / 50), abs=1e-5)
    # (0, 4): d1 = d2 = sqrt(9 + 9)
    assert w[0, 4] == pytest.approx(1 + 10 * math.exp(-(2 * math.sqrt(18)) ** 2 / 50), abs=1e-5)
    # (3, 2): d1 = 1 (cell 2), d2 = 5 (cell 3)
    assert w[3, 2] == pytest.approx(1 + 10 * math.exp(-36 / 50), abs=1e-5)
    # (3, 0): d1 = 1, d2 = 7
    assert w[3, 0] == pytest.approx(1 + 10 * math.exp(-64 / 50), abs=1e-5)
    # cell pixels carry the class weight only
    assert w[3, 1] == w[3, 7] == 1.0
    # balanced: 61 background, 2 cell pixels
    wb = weight_map(ann, w0=0, class_weights="balanced")
    assert wb[0, 0] == pytest.approx(63 / (2 * 61))
    assert wb[3, 1] == pytest.approx(63 / (2 * 2))
    assert wb.mean() == pytest.approx(1.0)


def test_unannotated_pixels_weigh_zero_and_no_gap_insertion():
    ann = np.zeros((20, 20), np.uint16)
    ann[2:8, 2:8] = 2
    ann[2:8, 8:14] = 3  # touching cells: weight_map keeps them as they are
    ann[10:15, :] = 1
    w = weight_map(ann)
    assert np.all(w[ann == 0] == 0)
    assert np.all(w[ann > 0] > 0)
    cells = w[ann >= 2]
    assert np.allclose(cells, cells[0])  # one class weight for every cell pixel


def test_fewer_than_two_cells_has_no_border_term():
    ann = np.ones((30, 30), np.uint8)
    ann[10:15, 10:15] = 2
    w = weight_map(ann, class_weights=None)
    assert np.all(w == 1.0)
    assert np.all(weight_map(np.ones((5, 5), np.uint8), class_weights=None) == 1.0)


def test_class_mode_uses_class_weights_only():
    ann = np.zeros((10, 10), np.uint8)
    ann[:3] = 1
    ann[3:5] = 2
    ann[5:6] = 3
    w = weight_map(ann, mode="classes", class_weights=(1.0, 2.0, 3.0))
    assert np.all(w[:3] == 1) and np.all(w[3:5] == 2) and np.all(w[5] == 3) and np.all(w[6:] == 0)
    wb = weight_map(ann, mode="classes")
    # balanced: each class carries the same total weight
    totals = [wb[ann == k].sum() for k in (1, 2, 3)]
    assert np.allclose(totals, totals[0])
    with pytest.raises(ValueError, match="class_weights"):
        weight_map(ann, mode="classes", class_weights=(1.0, 2.0))


def test_errors():
    with pytest.raises(TypeError, match="integer"):
        weight_map(np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="2D"):
        weight_map(np.ones((2, 2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="mode"):
        weight_map(np.ones((4, 4), np.uint8), mode="semantic")
    with pytest.raises(ValueError, match="balanced"):
        weight_map(np.ones((4, 4), np.uint8), class_weights="inverse")


def test_two_nearest_distances_beyond_cutoff_are_not_underestimated():
    cells = np.zeros((40, 40), np.int32)
    cells[5, 5] = 1
    cells[5, 30] = 2
    d1, d2 = two_nearest_distances(cells, cutoff=8.0)
    assert d1[5, 8] == pytest.approx(3.0) and d2[5, 8] >= 8.0
    assert np.isinf(d1[39, 39])


@pytest.mark.parametrize("spacing", [(4.0, 1.0), (1.0, 2.5), (0.5, 0.5)])
def test_two_nearest_distances_with_rectangular_pixels_match_brute_force(spacing):
    cells = np.zeros((14, 30), np.int32)
    cells[2:4, 3:8] = 1
    cells[9:12, 5:9] = 2
    cells[5:7, 20:26] = 3
    d1, d2 = two_nearest_distances(cells, cutoff=1e6, spacing=spacing)
    yy, xx = np.indices(cells.shape)
    each = []
    for label in (1, 2, 3):
        ys, xs = np.nonzero(cells == label)
        dy = (yy[..., None] - ys) * spacing[0]
        dx = (xx[..., None] - xs) * spacing[1]
        each.append(np.sqrt(dy**2 + dx**2).min(-1))
    each = np.sort(np.stack(each), axis=0)
    np.testing.assert_allclose(d1, each[0], atol=1e-4)
    np.testing.assert_allclose(d2, each[1], atol=1e-4)


def test_the_border_term_of_tall_pixels_is_narrower_in_rows():
    # a gap one row high between two cells: with rows four times as tall as wide the gap pixel is
    # 4 + 4 units from both; beside the gap, one row and three columns from each cell, 5 + 5
    ann = np.ones((21, 21), np.int32)
    ann[4:10, 5:16] = 2
    ann[11:17, 5:16] = 3
    square = weight_map(ann, w0=10, sigma=5, class_weights=None)
    tall = weight_map(ann, w0=10, sigma=5, class_weights=None, spacing=(4.0, 1.0))
    assert tall[10, 10] == pytest.approx(1 + 10 * math.exp(-(8.0**2) / 50), abs=1e-5)
    assert square[10, 10] == pytest.approx(1 + 10 * math.exp(-(2.0**2) / 50), abs=1e-5)
    assert tall[10, 2] == pytest.approx(1 + 10 * math.exp(-(10.0**2) / 50), abs=1e-5)
    assert square[10, 2] == pytest.approx(1 + 10 * math.exp(-((2 * math.sqrt(10.0)) ** 2) / 50), abs=1e-5)
    np.testing.assert_array_equal(weight_map(ann, w0=10, sigma=5, spacing=(1.0, 1.0)), weight_map(ann, w0=10, sigma=5))


def test_huge_label_ids_work():
    ann = np.ones((30, 30), np.int64)
    ann[5:10, 5:10] = 2
    ann[5:10, 12:17] = 10**12
    np.testing.assert_allclose(weight_map(ann), _weight_map_reference(ann), atol=1e-4)


def test_fiji_preset():
    ann = np.ones((60, 60), np.uint8)
    ann[28:32, 5:9] = 2
    w = fiji_weight_map(ann, r=0.1, sigma1=10.0, w0=10.0, sigma=5.0)
    # one cell: background = r + (1 - r) exp(-d1^2 / (2 sigma1^2)); cells 1
    assert w[30, 6] == 1.0
    assert w[30, 12] == pytest.approx(0.1 + 0.9 * math.exp(-16 / 200), abs=1e-5)  # d1 = 4
    assert w[30, 59] == pytest.approx(0.1 + 0.9 * math.exp(-(50**2) / 200), abs=1e-5)
    ann[28:32, 11:15] = 3
    w2 = fiji_weight_map(ann)
    # between the two cells at (30, 10): decay (d1 = 1) + border term (d1 = 1, d2 = 2)
    expected = 0.1 + 0.9 * math.exp(-1 / 200) + 10 * math.exp(-9 / 50)
    assert w2[30, 10] == pytest.approx(expected, abs=1e-5)
    ann[0, 0] = 0
    assert fiji_weight_map(ann)[0, 0] == 0


@pytest.mark.parametrize("spacing", [None, (4.0, 1.0, 1.0), (1.5, 0.5, 1.0)])
def test_two_nearest_distances_of_a_volume_are_exact_with_its_voxel_size(spacing):
    cells = np.zeros((7, 20, 22), np.int32)
    cells[1:3, 3:8, 4:9] = 1
    cells[3:5, 10:15, 12:18] = 2
    cells[0:2, 14:19, 2:6] = 3
    cells[5:7, 2:5, 15:20] = 4
    d1, d2 = two_nearest_distances(cells, 1e3, spacing)
    brute = np.sort([ndi.distance_transform_edt(cells != k, sampling=spacing) for k in (1, 2, 3, 4)], axis=0)
    np.testing.assert_allclose(d1, brute[0], atol=1e-5)
    np.testing.assert_allclose(d2, brute[1], atol=1e-5)
    with pytest.raises(ValueError, match="one size per axis"):
        two_nearest_distances(cells, 10.0, (1.0, 1.0))
