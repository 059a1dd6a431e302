"""to_labels: class maps and instances from probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.labels.instances import label_options, split_height, to_labels


def _probabilities(mask: np.ndarray) -> np.ndarray:
    cell = mask.astype(np.float32) * 0.8 + 0.1
    return np.stack([1 - cell, cell])


def _disks(shape, centers, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx in centers:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    return mask


def test_classes_is_the_argmax():
    rng = np.random.default_rng(0)
    p = rng.random((4, 20, 30)).astype(np.float32)
    labels = to_labels(p, "classes")
    assert labels.dtype == np.int32 and labels.shape == (20, 30)
    np.testing.assert_array_equal(labels, p.argmax(0))
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_instances_components_small_objects_and_ids():
    mask = _disks((60, 80), [(15, 15), (40, 60)], 8)
    mask[55:57, 5:7] = True  # 4 pixels: removed
    labels = to_labels(_probabilities(mask), "instances", min_size=10)
    assert labels.dtype == np.int32
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert labels[15, 15] != labels[40, 60]
    assert labels[56, 6] == 0
    assert len(np.unique(to_labels(_probabilities(mask), min_size=1))) == 4


def test_split_merged_cells_by_distance():
    mask = _disks((60, 90), [(30, 28), (30, 58)], 16)  # two touching cells, one component
    p = _probabilities(mask)
    assert to_labels(p, split=None).max() == 1
    split = to_labels(p, split="distance")
    assert split.max() == 2
    assert split[30, 20] != split[30, 66] and split[30, 20] > 0 and split[30, 66] > 0
    assert ((split > 0) == mask).all()  # the split keeps every cell pixel
    # one round cell is not split
    assert to_labels(_probabilities(_disks((60, 60), [(30, 30)], 15)), split="distance").max() == 1


def test_split_by_probability_follows_the_valley():
    mask = _disks((60, 90), [(30, 28), (30, 58)], 16)
    yy, xx = np.mgrid[:60, :90]
    peaks = np.maximum(np.exp(-((yy - 30) ** 2 + (xx - 28) ** 2) / 200), np.exp(-((yy - 30) ** 2 + (xx - 58) ** 2) / 200))
    cell = np.where(mask, 0.55 + 0.4 * peaks, 0.1)  # high in each cell, a valley where they touch
    p = np.stack([1 - cell, cell]).astype(np.float32)
    labels = to_labels(p, split="probability")
    assert labels.max() == 2 and labels[30, 20] != labels[30, 66]


def test_stack_ids_are_unique_across_planes_and_threshold_mode():
    mask = _disks((40, 40), [(10, 10), (28, 28)], 6)
    p = np.stack([_probabilities(mask)] * 3, axis=1)  # (2, Z=3, Y, X)
    labels = to_labels(p)
    assert labels.shape == (3, 40, 40) and labels.dtype == np.int32
    ids = [set(np.unique(plane)) - {0} for plane in labels]
    assert all(len(s) == 2 for s in ids)
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    assert sorted(set.union(*ids)) == list(range(1, 7))
    # threshold on the cell probability (0.9 where cells are): a high threshold keeps nothing
    assert to_labels(p, threshold=0.95).max() == 0
    assert to_labels(p, threshold=0.5).max() == 6
    out = np.zeros((3, 40, 40), np.int32)
    assert to_labels(p, out=out) is out and out.max() == 6


def test_cell_class_and_multiclass_instances():
    mask = _disks((40, 40), [(20, 20)], 8)
    p = np.zeros((3, 40, 40), np.float32)
    p[0] = 1
    p[:, mask] = [[0.1], [0.2], [0.7]]
    assert to_labels(p, cell_class=1).max() == 0
    assert to_labels(p, cell_class=2).max() == 1


def test_errors_say_what_was_given():
    with pytest.raises(ValueError, match=r"\(n_classes, \.\.\., Y, X\).*\(10, 10\)"):
        to_labels(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="mode"):
        to_labels(np.zeros((2, 4, 4)), "cells")
    with pytest.raises(ValueError, match="split"):
        to_labels(np.zeros((2, 4, 4)), split="watershed")
    with pytest.raises(ValueError, match="cell_class.*got 5"):
        to_labels(np.zeros((2, 4, 4)), cell_class=5)
    with pytest.raises(ValueError, match="empty"):
        to_labels(np.zeros((2, 0, 4)))
    with pytest.raises(ValueError, match=r"out has shape \(4, 5\), expected \(4, 4\)"):
        to_labels(np.zeros((2, 4, 4)), out=np.zeros((4, 5), np.int32))


def test_default_splits_touching_cells_that_the_network_merged():
    # two overlapping disks predicted as one blob: the default labelling gives two cells
    mask = _disks((60, 100), [(30, 30), (30, 62)], 18)
    p = _probabilities(mask)
    assert to_labels(p).max() == 2
    assert to_labels(p, split=None).max() == 1


def test_split_and_size_filter_scale_with_the_cell_diameter():
    # a peanut: two 25 px disks 24 px apart, a saddle ~2.6 px below the peaks (one cell, an
    # irregular shape) -- and two 16 px disks that just touch (two cells, a deep neck)
    peanut = _probabilities(_disks((80, 120), [(40, 40), (40, 64)], 25))
    assert to_labels(peanut).max() == 2  # 2 px, the default without a known cell size, splits it
    assert to_labels(peanut, cell_diameter=50).max() == 1  # 0.1 * 50 = 5 px: one cell
    pair = _probabilities(_disks((80, 120), [(40, 40), (40, 70)], 16))
    assert to_labels(pair, cell_diameter=32).max() == 2
    assert to_labels(pair, cell_diameter=50).max() == 2
    # debris of 40 px: kept with the fixed 10 px filter, removed at a tenth of a 30 px cell (71 px)
    mask = _disks((80, 80), [(30, 30)], 15)
    mask[70:75, 70:78] = True
    p = _probabilities(mask)
    assert to_labels(p).max() == 2
    assert to_labels(p, cell_diameter=30).max() == 1
    assert to_labels(p, cell_diameter=30, min_size=1).max() == 2  # explicit values win
    with pytest.raises(ValueError, match="cell_diameter"):
        to_labels(p, cell_diameter=-3)
    with pytest.raises(ValueError, match="split_h"):
        to_labels(p, split_h=0)


def test_small_touching_cells_are_split_at_a_shallower_neck_than_large_ones():
    # two 10 px cells, centres 7 px apart: a neck about 7 px wide, a dip under 1 px in the distance
    # transform; the 0.1 x diameter rule (at least 1 px) kept them one, the small-cell rule splits
    pair = _probabilities(_disks((40, 48), [(20, 20.5), (20, 27.5)], 5.2))
    assert to_labels(pair, cell_diameter=10).max() == 2
    assert to_labels(pair, cell_diameter=10, split_h=split_height(10, small_cells=False)).max() == 1
    # ... while a single small elongated cell (16 x 8 px) is not cut
    yy, xx = np.mgrid[:40, :40]
    rod = ((yy - 20) / 4) ** 2 + ((xx - 20) / 8) ** 2 <= 1
    assert to_labels(_probabilities(rod), cell_diameter=10).max() == 1
    # cells of 25 px and more keep a tenth of their diameter
    assert split_height(25) == split_height(25, small_cells=False) == 2.5
    assert split_height(48) == pytest.approx(4.8)


def test_a_piece_smaller_than_half_a_cell_is_not_split():
    # two 20 px lobes joined by a 9 px neck (a dividing cell's figure, ~600 px) where typical
    # cells are 40 px wide (~1260 px): one odd-shaped cell, not two cells of half the diameter
    lobes = _probabilities(_disks((40, 64), [(20, 22), (20, 40)], 10))
    assert to_labels(lobes, cell_diameter=40).max() == 1
    assert to_labels(lobes, split_h=split_height(40)).max() == 2  # the distance split alone cuts it
    # two touching cells of the typical size are still split, and so are two small touching cells
    # painted as the typical ones
    assert to_labels(_probabilities(_disks((60, 100), [(30, 30), (30, 66)], 20)), cell_diameter=40).max() == 2
    assert to_labels(_probabilities(_disks((40, 48), [(20, 20.5), (20, 27.5)], 5.2)), cell_diameter=10).max() == 2
    # the same in 3D, against a ball's volume
    zz, yy, xx = np.mgrid[:24, :40, :64]
    balls = ((zz - 12) ** 2 + (yy - 20) ** 2 + (xx - 22) ** 2 < 100) | ((zz - 12) ** 2 + (yy - 20) ** 2 + (xx - 40) ** 2 < 100)
    assert to_labels(_probabilities(balls), cell_diameter=40, three_d=True).max() == 1
    assert to_labels(_probabilities(balls), split_h=split_height(40), three_d=True).max() == 2


def test_pieces_the_network_was_unsure_between_are_one_cell_when_small():
    # two bright 16 px pieces with an unsure gap (cell probability 0.4: the argmax says background)
    # between them, ~520 px together, where typical cells are 40 px wide: one cell (a dividing
    # cell's chromosomes), one connected object
    def pieces(gap_p, radius=8):
        shape = (2 * radius + 10, 4 * radius + 16)
        y, x1, x2 = radius + 5, radius + 5, 3 * radius + 9  # a 4 px gap
        cell = np.full(shape, 0.05, np.float32)
        cell[y - 4:y + 4, x1:x2] = gap_p
        cell[_disks(shape, [(y, x1), (y, x2)], radius)] = 0.9
        return np.stack([1 - cell, cell])

    labels = to_labels(pieces(0.4), cell_diameter=40)
    assert labels.max() == 1 and (labels > 0).sum() > 2 * 190
    assert to_labels(pieces(0.4), min_size=126, split_h=split_height(40)).max() == 2  # without the cell size
    # a sure gap keeps them apart, and so does an unsure gap between pieces as large as cells
    assert to_labels(pieces(0.1), cell_diameter=40).max() == 2
    assert to_labels(pieces(0.4, radius=14), cell_diameter=40).max() == 2


def test_a_symmetric_cell_is_not_split_by_equal_twin_peaks():
    # h_maxima marks both of two equal peaks however shallow the saddle; the split must not
    mask = _disks((70, 100), [(35, 42), (35, 58)], 25)  # saddle ~1.3 px below the twin peaks
    assert to_labels(_probabilities(mask), split="distance", split_h=2.0).max() == 1


def test_label_options_follow_the_model():
    class Model:
        metadata = {"mode": "instances", "cell_diameter": 21.5}

    assert label_options(Model()) == {"mode": "instances", "cell_diameter": 21.5}
    assert label_options(Model(), "classes") == {"mode": "classes"}
    Model.metadata = {"mode": "classes"}
    assert label_options(Model()) == {"mode": "classes"}
    Model.metadata = {"mode": "instances"}  # a model file from before the diameter was kept
    assert label_options(Model()) == {"mode": "instances"}


def _three_class(interiors, borders):
    """Probabilities (background, interior, border) of masks: 0.8 for the winning class."""
    p = np.full((3,) + interiors.shape, 0.1, np.float32)
    p[0][~(interiors | borders)] = 0.8
    p[1][interiors] = 0.8
    p[2][borders & ~interiors] = 0.8
    return p


def test_border_class_seeds_one_cell_per_interior():
    # two touching disks merged into one blob; only the interiors are apart
    shape = (40, 60)
    blob = _disks(shape, [(20, 20), (20, 36)], 10)
    interiors = _disks(shape, [(20, 20), (20, 36)], 6)
    p = _three_class(interiors, blob)
    labels = to_labels(p, border_class=2, min_size=1)
    assert labels.max() == 2
    np.testing.assert_array_equal(labels > 0, blob)  # the border pixels are grown onto the cells
    assert labels[20, 20] != labels[20, 36]
    # a thin object with no interior pixel is still a cell; a one-pixel speck of interior seeds none
    thin = np.zeros(shape, bool)
    thin[5, 30:58] = True
    speck = interiors.copy()
    speck[20, 28] = True  # between the two cells, inside the blob
    p = _three_class(speck, blob | thin)
    labels = to_labels(p, border_class=2, cell_diameter=16)  # min size 20 px: seeds of 5 px or more
    assert labels.max() == 3 and labels[5, 50] > 0
    # the two-class reading of the same probabilities would be different: border_class matters
    with pytest.raises(ValueError, match="border_class"):
        to_labels(p, border_class=1)
    with pytest.raises(ValueError, match="border_class"):
        to_labels(p, border_class=3)


def test_label_options_pass_the_border_class():
    class Model:
        metadata = {"mode": "instances", "cell_diameter": 12.0, "border_class": 2}

    assert label_options(Model()) == {"mode": "instances", "cell_diameter": 12.0, "border_class": 2}
    assert label_options(Model(), "classes") == {"mode": "classes"}


def test_uncertain_holes_are_filled_confident_background_is_kept():
    """A large cell whose textured inside the network was unsure of (p 0.4) is one whole cell;
    a lumen ringed by cells that the network is sure is background (p 0.02) stays background."""
    yy, xx = np.mgrid[:120, :200]
    r = np.hypot(yy - 60, xx - 50)
    cell = np.where(r < 30, 0.9, 0.02)
    cell[(r < 22) & ((yy + xx) % 7 < 4)] = 0.4  # pin holes and a ragged inside, just below 0.5
    ring = np.hypot(yy - 60, xx - 150)
    cell[(ring >= 12) & (ring < 24)] = 0.9  # a ring of cell around a sure lumen
    p = np.stack([1 - cell, cell]).astype(np.float32)
    labels = to_labels(p, cell_diameter=40)
    big = labels[np.hypot(yy - 60, xx - 50) < 30]
    assert (big > 0).all() and len(np.unique(big)) == 1  # one cell, no holes, not split
    assert labels[60, 150] == 0 and (labels[ring < 11] == 0).all()  # the lumen is not filled
    fragments = to_labels(p, cell_diameter=40, fill_holes=False)
    assert (fragments[r < 22] == 0).any()  # without filling the pin holes stay
    assert to_labels(p, cell_diameter=40, fill_holes=True)[60, 150] > 0  # True fills every hole
    with pytest.raises(ValueError, match="fill_holes"):
        to_labels(p, fill_holes="yes")


@pytest.mark.parametrize("connectivity, threshold", [(1, None), (2, None), (1, 0.2), (2, 0.2)])
def test_every_object_is_one_connected_piece(connectivity, threshold):
    """Ragged, noisy cells (probabilities near 0.5): each id is one piece under the cell
    connectivity, so a block's faces see every object that crosses them (distributed labels),
    also where pieces the network was unsure between are joined (a threshold under its level)."""
    from scipy import ndimage as ndi

    structure = ndi.generate_binary_structure(2, connectivity)
    for seed in (2, 3, 4):
        rng = np.random.default_rng(seed)
        cell = np.clip(ndi.gaussian_filter(rng.random((160, 160)), 1.0) * 4 - 1.5 + 0.25 * rng.random((160, 160)), 0, 1)
        p = np.stack([1 - cell, cell]).astype(np.float32)
        labels = to_labels(p, cell_diameter=12, connectivity=connectivity, min_size=1, threshold=threshold)
        assert labels.max() > 50
        for i, box in enumerate(ndi.find_objects(labels), start=1):
            assert ndi.label(labels[box] == i, structure)[1] == 1, (seed, i)


@pytest.mark.parametrize("shape, side, sigma, h", [((700, 650), 192, 3, 1.5), ((700, 650), 192, 3, 0.4),
                                                   ((700, 650), 64, 2, 4.0), ((6, 90, 80), 32, 1.5, 1.5)])
def test_seeds_found_piece_by_piece_equal_those_of_the_whole_surface(shape, side, sigma, h, monkeypatch):
    # the seeds found on the pieces' cores above their lowest peak less h (one peak: no
    # reconstruction; the others packed side by side in rows of PACK_WIDTH) must be the whole
    # surface's maxima
    from scipy import ndimage as ndi
    from skimage.morphology import local_maxima, reconstruction

    import napari_unet.labels.seeds as post

    rng = np.random.default_rng(3)
    blobs = ndi.gaussian_filter(rng.random(shape), sigma) > 0.5  # many pieces, some touching diagonally
    surface = ndi.gaussian_filter(ndi.distance_transform_edt(blobs), 1.0)
    surface = np.where(blobs, surface, 0.0)
    monkeypatch.setattr(post, "WHOLE_SURFACE_SIDE", side)  # surfaces larger than side**ndim: the cores
    monkeypatch.setattr(post, "PACK_WIDTH", side)  # many rows
    whole = local_maxima(reconstruction(surface - h, surface, method="dilation"), connectivity=len(shape),
                         allow_borders=True)
    grouped = post.dynamic_maxima(surface, h)
    assert ndi.label(blobs)[1] > 5 and grouped[blobs].any()
    np.testing.assert_array_equal(grouped & blobs, whole & blobs)
    if len(shape) == 2:  # the reconstruction saw the cores of a few pieces, not every pixel
        cores, n, single, _ = post._cores(surface, h)
        assert 0 < (cores > 0).sum() < blobs.sum() and 0 < single[1:].sum() < n


@pytest.mark.parametrize("shape", [(120, 130), (9, 40, 50)])
def test_holes_are_those_binary_fill_holes_finds_numbered_alike(shape):
    # _holes labels the background once instead of filling and labelling again: the same holes,
    # the same numbers (holes touching the image's faces are outside, not holes)
    from scipy import ndimage as ndi

    import napari_unet.labels.instances as post

    rng = np.random.default_rng(5)
    counts = []
    for share in (0.05, 0.1, 0.4):  # of background
        smooth = ndi.gaussian_filter(rng.random(shape), 1.0)
        mask = smooth > np.quantile(smooth, share)
        expected, n_expected = ndi.label(ndi.binary_fill_holes(mask) & ~mask)
        holes, n = post._holes(mask)
        assert n == n_expected
        np.testing.assert_array_equal(holes, expected)
        counts.append(n)
    assert max(counts) > 3  # holes there were


@pytest.mark.parametrize("connectivity", [1, 2])
def test_the_flood_of_the_clumps_alone_is_the_whole_watershed(connectivity):
    # _flooded runs the watershed only where a component holds two or more markers; a component
    # with one is that marker's: the same labels as one watershed of everything
    from scipy import ndimage as ndi
    from skimage.measure import label as cc_label
    from skimage.segmentation import watershed

    import napari_unet.labels.instances as post

    rng = np.random.default_rng(11)
    mask = ndi.gaussian_filter(rng.random((300, 280)), 3) > 0.5
    surface = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0)
    markers = cc_label((surface > 2.5) & mask, connectivity=connectivity)
    components = cc_label(mask, connectivity=connectivity)
    lone = np.setdiff1d(np.unique(components), np.unique(components[markers > 0]))
    markers = np.where(np.isin(components, lone[lone > 0]), components + markers.max(), markers)
    counts = [len(np.unique(markers[(components == c) & (markers > 0)])) for c in range(1, components.max() + 1)]
    assert 1 in counts and max(counts) > 1  # both kinds of component
    expected = watershed(-surface, markers, mask=mask, connectivity=connectivity)
    np.testing.assert_array_equal(post._flooded(surface, markers, components, mask, connectivity), expected)


def test_distance_to_background_is_scipys_bit_for_bit(monkeypatch):
    # the edt package's squared distances, square-rooted in float64, must be scipy's distances
    # exactly (the seeds' surface depends on them); what edt cannot give exactly falls back
    from scipy import ndimage as ndi

    import napari_unet.labels.seeds as seeds

    rng = np.random.default_rng(11)
    calls = []
    real = ndi.distance_transform_edt
    monkeypatch.setattr(seeds.ndi, "distance_transform_edt", lambda *a, **k: calls.append(1) or real(*a, **k))
    cases = [ndi.gaussian_filter(rng.random((300, 280)), 2) > 0.5,       # many cells
             ndi.gaussian_filter(rng.random((12, 60, 70)), 1.5) > 0.45]  # a stack
    for mask in cases:
        np.testing.assert_array_equal(seeds.distance_to_background(mask), real(mask))
    assert not calls  # both by edt
    lone = np.ones((2200, 1000), bool)
    lone[0, 0] = False  # distances past EXACT_SQUARED: scipy's transform
    special = [(lone, None), (np.ones((30, 40), bool), None),  # no background: scipy's finite answer
               (cases[1], (2.5, 1.0, 1.0))]  # voxel sizes: scipy's
    for mask, sampling in special + [(np.zeros((30, 40), bool), None)]:  # all background: edt's zeros
        np.testing.assert_array_equal(seeds.distance_to_background(mask, sampling), real(mask, sampling=sampling))
    assert len(calls) == len(special)
