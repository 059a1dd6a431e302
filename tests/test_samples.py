import numpy as np
import pytest

from napari_unet.samples import load_nuclei, make_touching_cells, sparse_annotations, touching_pairs


def test_synthetic_sample_is_deterministic_and_seeded():
    a = make_touching_cells((160, 200), seed=3)
    b = make_touching_cells((160, 200), seed=3)
    c = make_touching_cells((160, 200), seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    image, instances, annotations = a
    assert image.shape == instances.shape == annotations.shape == (160, 200)
    assert image.dtype == np.uint16 and instances.dtype == np.int32


def test_synthetic_sample_has_touching_cells_and_a_sparse_annotation():
    image, instances, annotations = make_touching_cells((512, 512), seed=0)
    n = instances.max()
    assert 100 < n < 600
    assert len(touching_pairs(instances)) > 40, "many pairs must touch"
    # cells are brighter than background
    assert image[instances > 0].mean() > 2 * image[instances == 0].mean()
    frac = (annotations > 0).mean()
    assert 0.01 < frac < 0.035, frac
    # convention: 1 = background strokes only on background, cell ids paint whole cells
    assert np.all(instances[annotations == 1] == 0)
    ids = np.unique(annotations[annotations > 1])
    assert len(ids) >= 4
    for i in ids:
        cell = np.unique(instances[annotations == i])
        assert len(cell) == 1 and cell[0] > 0
        assert np.array_equal(annotations == i, instances == cell[0]), "painted cells are complete"
    painted_pairs = touching_pairs(np.where(annotations > 1, annotations, 0))
    assert painted_pairs, "some painted cells touch each other"


def test_sparse_annotations_validates_input():
    with pytest.raises(ValueError, match="2D"):
        sparse_annotations(np.zeros((2, 8, 8), int))


def test_touching_pairs_small_example():
    lab = np.array([[1, 1, 2], [0, 0, 2], [3, 0, 0]])
    assert touching_pairs(lab) == {(1, 2)}
    lab[1, 0] = 1  # 3 now touches 1 vertically
    assert touching_pairs(lab) == {(1, 2), (1, 3)}


def test_nuclei_sample():
    image, instances, annotations = load_nuclei()
    assert image.shape == instances.shape == annotations.shape == (6, 256, 256)
    assert image.dtype == np.uint16
    annotated_planes = [z for z in range(6) if annotations[z].any()]
    assert annotated_planes == [1, 3]
    assert (annotations > 0).mean() < 0.05
    n_cells = sum(len(np.unique(annotations[z][annotations[z] > 1])) for z in annotated_planes)
    assert 8 <= n_cells <= 12
