import numpy as np
import pytest
import torch

from napari_unet.annotations.planes import training_slices, validate_annotations
from napari_unet.annotations.targets import (
    Targets,
    cell_borders,
    cell_ring,
    insert_gaps,
    instances_to_annotations,
    make_targets,
    painted_cell_diameter,
)
from napari_unet.annotations.weights import weight_map
from napari_unet.config import AugmentConfig
from napari_unet.dataset.sampler import Batch, TileSampler
from napari_unet.samples import make_touching_cells, touching_pairs

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _neighbour_ids(ann):
    """(8, Y, X) ids of the 8 neighbours (0 outside)."""
    padded = np.pad(ann, 1)
    h, w = ann.shape
    return np.stack([padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in NEIGHBOURS])


# ----------------------------------------------------------------------------- gaps / targets


def test_gap_between_two_touching_squares():
    ann = np.ones((8, 10), np.uint8)
    ann[2:6, 1:5] = 2
    ann[2:6, 5:9] = 3
    gapped = insert_gaps(ann)
    expected = ann.copy()
    expected[2:6, 4] = 1  # the column of cell 2 touching cell 3
    np.testing.assert_array_equal(gapped, expected)
    # diagonal contact only
    diag = np.ones((4, 4), np.uint8)
    diag[0:2, 0:2] = 4
    diag[2:4, 2:4] = 3
    g = insert_gaps(diag)
    assert g[2, 2] == 1 and (g == 1).sum() == 9  # one pixel of cell 3 gives way


@pytest.mark.parametrize("seed", [0, 1])
def test_gaps_exactly_between_touching_ids(seed):
    _, instances, _ = make_touching_cells((128, 128), seed=seed)
    ann = instances_to_annotations(instances).astype(np.int32)
    ann[:10] = 0  # an unannotated band: it is not a cell
    assert touching_pairs(np.where(ann >= 2, ann, 0))
    gapped = insert_gaps(ann)
    changed = gapped != ann
    # only cell pixels change, and only to background
    assert np.all(ann[changed] >= 2) and np.all(gapped[changed] == 1)
    # a pixel changed exactly when it touched a cell with a larger id
    nb = _neighbour_ids(ann)
    touching_larger = (ann >= 2) & ((nb >= 2) & (nb > ann)).any(0)
    np.testing.assert_array_equal(changed, touching_larger)
    # afterwards no two different cells touch (8-connected)
    assert not touching_pairs(np.where(gapped >= 2, gapped, 0))


def test_make_targets_instance_mode():
    ann = np.zeros((30, 30), np.uint16)
    ann[5:25, 2:28] = 1
    ann[8:16, 5:12] = 2
    ann[8:16, 12:20] = 3  # touches cell 2
    t = make_targets(ann, w0=10, sigma=5)
    assert isinstance(t, Targets)
    assert t.target.dtype == np.int64 and t.weights.dtype == np.float32 and t.mask.dtype == bool
    np.testing.assert_array_equal(t.mask, ann > 0)
    # unannotated: target 0, weight 0
    assert np.all(t.target[ann == 0] == 0) and np.all(t.weights[ann == 0] == 0)
    # the gap column became background with the weight map of the gapped labels
    assert np.all(t.target[8:16, 11] == 0)
    expected = weight_map(insert_gaps(ann), w0=10, sigma=5)
    np.testing.assert_allclose(t.weights, expected)
    assert t.weights[12, 11] > 8  # d1 = d2 = 1: strong border weight
    assert np.all(t.target[8:16, 5:11] == 1) and np.all(t.target[8:16, 12:20] == 1)
    no_gap = make_targets(ann, gap=False)
    assert np.all(no_gap.target[8:16, 11] == 1)


def test_cell_ring_marks_only_unpainted_pixels_next_to_painted_cells():
    ann = np.zeros((20, 20), np.uint16)
    ann[5:10, 5:10] = 2
    ann[5:10, 10:12] = 1  # painted background right of the cell stays as painted
    ring = cell_ring(ann, 1)
    expected = np.zeros_like(ring)
    expected[4:11, 4:11] = True
    expected[5:10, 5:10] = False
    expected[5:10, 10] = False
    np.testing.assert_array_equal(ring, expected)
    assert cell_ring(ann, 2).sum() > ring.sum() and not cell_ring(ann, 0).any()
    with pytest.raises(ValueError, match=">= 0"):
        cell_ring(ann, -1)


def test_cell_ring_leaves_specks_the_brush_missed_inside_a_cell_unannotated():
    ann = np.zeros((20, 24), np.uint16)
    ann[4:12, 4:12] = 2
    ann[7:9, 7:9] = 0  # a speck inside cell 2 the brush missed: not background
    ann[4:12, 13:20] = 3
    ann[4:12, 12] = 0  # the gap between two touching cells, enclosed by neither alone
    ann[12, 12] = 3
    ann[3, 12] = 2
    ring = cell_ring(ann, 1)
    assert not ring[7:9, 7:9].any()
    assert ring[4:12, 12].all()
    assert ring[3, 3] and ring[12, 20]  # and the outside as before


def test_make_targets_ring_teaches_where_a_complete_cell_ends():
    ann = np.zeros((30, 30), np.uint16)
    ann[2:6, 2:28] = 1  # a background stroke far from the cells
    ann[12:20, 5:12] = 2
    ann[12:20, 12:20] = 3  # touches cell 2
    plain = make_targets(ann)
    t = make_targets(ann, ring=1)
    ring = cell_ring(insert_gaps(ann), 1)
    # the ring is annotated background; nothing else changes class
    assert np.all(t.mask[ring]) and np.all(t.target[ring] == 0) and np.all(t.weights[ring] > 0)
    assert not plain.mask[ring].any()
    np.testing.assert_array_equal(t.target[plain.mask], plain.target[plain.mask])
    assert t.mask.sum() == plain.mask.sum() + ring.sum()
    # ring_border: the outer edge of a lone cell side weighs like a touching-cell gap
    tb = make_targets(ann, ring=1, ring_border=True, w0=10, sigma=5)
    edge = (16, 4)  # left of cell 2, far from cell 3
    assert t.weights[edge] < 3 and tb.weights[edge] > 8
    # the gap between the touching cells keeps its (larger or equal) paper weight
    assert tb.weights[16, 11] >= t.weights[16, 11] > 8


def test_make_targets_borders_is_a_third_class_on_each_cell_outline():
    ann = np.zeros((30, 30), np.uint16)
    ann[2:6, 2:28] = 1
    ann[12:20, 5:12] = 2
    ann[12:20, 12:20] = 3  # touches cell 2
    t = make_targets(ann, borders=True, class_weights=None, w0=10, sigma=5)
    gapped = insert_gaps(ann)
    outline = cell_borders(gapped)
    assert np.all(t.target[outline] == 2)
    assert np.all(t.target[(gapped >= 2) & ~outline] == 1) and np.all(t.target[gapped == 1] == 0)
    # interiors of touching cells are 3 px apart: border | gap | border
    row = t.target[16, 8:16].tolist()
    assert row == [1, 1, 2, 0, 2, 1, 1, 1]
    # the gap keeps the paper's border weight; classes weigh 1 here
    assert t.weights[16, 11] > 8 and t.weights[16, 8] == 1 and t.weights[3, 3] == pytest.approx(1, abs=0.01)
    balanced = make_targets(ann, borders=True)
    counts = np.bincount(balanced.target[balanced.mask], minlength=3)
    totals = [balanced.weights[balanced.mask & (balanced.target == k) & (gapped != 1)].sum() for k in (1, 2)]
    assert counts[2] > 0 and totals[0] == pytest.approx(totals[1], rel=1e-4)  # balanced: equal totals
    with pytest.raises(ValueError, match="3 classes"):
        make_targets(ann, borders=True, n_classes=2)


def test_make_targets_class_mode():
    ann = np.zeros((10, 10), np.uint8)
    ann[0:3] = 1
    ann[3:6] = 2
    ann[6:8] = 3
    t = make_targets(ann, mode="classes", n_classes=4, class_weights=None)
    np.testing.assert_array_equal(t.target[ann > 0], ann[ann > 0].astype(np.int64) - 1)
    assert np.all(t.weights[ann > 0] == 1) and np.all(t.weights[ann == 0] == 0)
    with pytest.raises(ValueError, match="beyond n_classes"):
        make_targets(ann, mode="classes", n_classes=2)
    with pytest.raises(TypeError):
        make_targets(ann.astype(float))


def test_instances_to_annotations():
    inst = np.array([[0, 0, 7], [3, 3, 7], [0, 12, 12]])
    ann = instances_to_annotations(inst)
    np.testing.assert_array_equal(ann, [[1, 1, 3], [2, 2, 3], [1, 4, 4]])
    assert np.all(instances_to_annotations(np.array([[5, 5]])) == 2)  # no background at all
    with pytest.raises(TypeError):
        instances_to_annotations(np.zeros((2, 2), np.float32))


# ----------------------------------------------------------------------------- validation


def test_validate_annotations_accepts_good_input():
    image = np.zeros((2, 3, 16, 16), np.uint16)  # ZCYX
    ann = np.zeros((2, 16, 16), np.uint8)
    ann[0, :2] = 1
    ann[1, 5:8, 5:8] = 2
    assert validate_annotations(image, ann, mode="instances") == 2
    assert validate_annotations(image, ann, mode="instances", axes="ZCYX") == 2
    assert validate_annotations(ann, mode="instances") == 2  # labels only
    assert validate_annotations([ann[0], ann[1]], mode="instances") == 2  # classes spread over planes
    assert validate_annotations(image, ann, mode="classes") == 2


def test_validate_annotations_errors():
    image = np.zeros((20, 30), np.float32)
    good = np.zeros((20, 30), np.uint8)
    good[0] = 1
    good[5:8, 5:8] = 2
    with pytest.raises(ValueError, match=r"\(20, 31\).*\(20, 30\)"):
        validate_annotations(image, np.zeros((20, 31), np.uint8), mode="instances")
    with pytest.raises(ValueError, match="the painting is empty: paint background"):
        validate_annotations(image, np.zeros((20, 30), np.uint8), mode="instances")
    with pytest.raises(TypeError, match="float"):
        validate_annotations(image, good.astype(np.float32), mode="instances")
    with pytest.raises(TypeError, match="bool"):
        validate_annotations(image, good > 0, mode="instances")
    classes = good.copy()
    classes[10:12] = 5
    with pytest.raises(ValueError, match="class 5.*n_classes=3"):
        validate_annotations(image, classes, mode="classes", n_classes=3)
    only_bg = np.zeros((20, 30), np.uint8)
    only_bg[0] = 1
    with pytest.raises(ValueError, match=r"background only: paint at least one cell"):
        validate_annotations(image, only_bg, mode="instances")
    only_cells = np.zeros((20, 30), np.uint8)
    only_cells[3:5, 3:5] = 2
    with pytest.raises(ValueError, match=r"has no background \(label 1\): paint some background"):
        validate_annotations(image, only_cells, mode="instances")
    with pytest.raises(ValueError, match=r"one class only \(2\): paint at least two classes"):
        validate_annotations(image, only_cells, mode="classes")
    with pytest.raises(ValueError, match="axes"):
        validate_annotations(image, good, mode="instances", axes="ZYX")


# ----------------------------------------------------------------------------- training slices


def test_training_slices_of_a_stack_skip_unannotated_planes_and_normalize_per_image():
    rng = np.random.default_rng(0)
    image = rng.integers(100, 4000, (4, 2, 20, 24)).astype(np.uint16)  # ZCYX
    image[:, 1] *= 10
    ann = np.zeros((4, 20, 24), np.uint8)
    ann[1, 2:4] = 1
    ann[3, 5:9, 5:9] = 2
    slices, indices = training_slices(image, ann, return_indices=True)
    assert indices == [(1,), (3,)]
    assert len(slices) == 2
    plane, plane_ann = slices[0]
    assert plane.shape == (2, 20, 24) and plane.dtype == np.float32
    np.testing.assert_array_equal(plane_ann, ann[1])
    # per channel percentiles over the whole stack
    for c in range(2):
        lo, hi = np.percentile(image[:, c].astype(np.float32), [1, 99.8])
        np.testing.assert_allclose(plane[c], (image[1, c] - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
    raw = training_slices(image, ann, normalization={"kind": "none"})
    np.testing.assert_array_equal(raw[1][0], image[3].astype(np.float32))


@pytest.mark.parametrize(
    "image_shape,ann_shape,axes,n_planes,n_channels",
    [
        ((20, 24), (20, 24), None, 1, 1),
        ((3, 20, 24), (20, 24), None, 1, 3),  # CYX
        ((20, 24, 3), (20, 24), None, 1, 3),  # YXC
        ((5, 20, 24), (5, 20, 24), None, 2, 1),  # ZYX
        ((2, 3, 20, 24), (2, 3, 20, 24), "TZYX", 2, 1),
        ((5, 2, 20, 24), (5, 20, 24), "ZCYX", 2, 2),
    ],
)
def test_training_slices_axes(image_shape, ann_shape, axes, n_planes, n_channels):
    image = np.arange(np.prod(image_shape), dtype=np.float32).reshape(image_shape)
    ann = np.zeros(ann_shape, np.uint8)
    lead = ann.reshape(-1, *ann_shape[-2:])
    lead[0, 0, 0] = 1
    lead[-1, 3, 3] = 2
    out = training_slices(image, ann, axes=axes, normalization={"kind": "none"})
    assert len(out) == n_planes
    for plane, plane_ann in out:
        assert plane.shape == (n_channels, 20, 24) and plane_ann.shape == (20, 24)
    if image_shape == (20, 24, 3):
        np.testing.assert_array_equal(out[0][0], np.moveaxis(image, -1, 0))
    if axes == "ZCYX":
        np.testing.assert_array_equal(out[1][0], image[4])


# ----------------------------------------------------------------------------- sampler


def _sparse_sample(shape=(120, 150), seed=0):
    image, _, ann = make_touching_cells(shape, seed=seed, annotated_fraction=0.01)
    (plane, plane_ann), = training_slices(image, ann)
    return plane, make_targets(plane_ann)


def test_sampler_tiles_always_hold_annotated_pixels():
    plane, targets = _sparse_sample()
    # a second, tiny image with a single annotated pixel, smaller than a tile
    small = np.random.default_rng(1).random((1, 13, 9)).astype(np.float32)
    small_ann = np.zeros((13, 9), np.uint8)
    small_ann[12, 0] = 1
    sampler = TileSampler(
        [plane, small], [targets, make_targets(small_ann)], input_shape=(60, 60), output_shape=(8, 8),
        augment=AugmentConfig(elastic_sigma=15.0, shift_pixels=10.0), seed=0,
    )
    for _ in range(25):
        batch = sampler.sample(8)
        assert isinstance(batch, Batch)
        assert batch.image.shape == (8, 1, 60, 60) and batch.image.dtype == torch.float32
        assert batch.target.shape == batch.weights.shape == (8, 8, 8)
        assert batch.target.dtype == torch.int64 and batch.weights.dtype == torch.float32
        assert (batch.weights > 0).flatten(1).any(1).all(), "a tile without annotated pixels"
        assert torch.isfinite(batch.image).all()


def test_sampler_without_augmentation_cuts_the_right_region():
    rng = np.random.default_rng(0)
    plane = rng.random((2, 50, 70)).astype(np.float32)
    ann = np.zeros((50, 70), np.uint8)
    ann[20, 30] = 2
    ann[40, 60] = 1
    t = make_targets(ann, class_weights=None)
    sampler = TileSampler([plane], [t], input_shape=(24, 24), output_shape=(10, 10), augment=None, seed=0)
    for _ in range(10):
        b = sampler.sample(4)
        for k in range(4):
            (ys, xs) = torch.nonzero(b.weights[k] > 0, as_tuple=True)
            assert len(ys) == 1 and (ys.item(), xs.item()) == (5, 5)  # the centre of the output
            # image centre region matches the plane around the annotated pixel
            cls = b.target[k, 5, 5].item()
            cy, cx = (20, 30) if cls == 1 else (40, 60)
            window = np.take(np.take(plane, np.arange(cy - 12, cy + 12), axis=1, mode="clip"), np.arange(cx - 12, cx + 12), axis=2, mode="clip")
            if cy + 12 <= 50 and cx + 12 <= 70:
                np.testing.assert_array_equal(b.image[k].numpy(), window)
            else:  # mirrored border: the in-image part still matches
                np.testing.assert_array_equal(b.image[k, :, :12 + 50 - cy - 1, :12 + 70 - cx - 1].numpy(), plane[:, cy - 12 : 49, cx - 12 : 69])


def test_sampler_is_seeded_and_set_targets_swaps_annotations():
    plane, targets = _sparse_sample()
    kwargs = dict(input_shape=(44, 44), output_shape=(20, 20), augment=AugmentConfig(), seed=3)
    a = TileSampler([plane], [targets], **kwargs).sample(4)
    b = TileSampler([plane], [targets], **kwargs).sample(4)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    sampler = TileSampler([plane], [targets], **dict(kwargs, augment=None))
    fresh = np.zeros(plane.shape[1:], np.uint8)
    fresh[100, 10] = 2  # a single new annotated pixel, near the border
    sampler.set_targets(0, make_targets(fresh))
    assert sampler.n_annotated == 1
    batch = sampler.sample(3)
    assert torch.all((batch.weights > 0).flatten(1).sum(1) == 1)
    assert torch.all(batch.target[:, 10, 10] == 1)
    with pytest.raises(ValueError, match="shape"):
        sampler.set_targets(0, make_targets(np.ones((5, 5), np.uint8)))
    sampler.set_targets([plane, plane], [targets, targets])  # replace everything
    assert sampler.n_annotated == 2 * int((targets.weights > 0).sum())


def test_split_validation_holds_out_disjoint_blocks():
    plane, targets = _sparse_sample((200, 200), seed=2)
    sampler = TileSampler([plane], [targets], input_shape=(44, 44), output_shape=(20, 20), augment=AugmentConfig(), seed=0)
    total = sampler.n_annotated
    val = sampler.split_validation(0.25, seed=1, block=16)
    train_w, val_w = sampler.targets[0].weights, val.targets[0].weights
    assert not np.any((train_w > 0) & (val_w > 0))
    np.testing.assert_array_equal((train_w > 0) | (val_w > 0), targets.weights > 0)
    assert 0.05 * total < val.n_annotated < 0.5 * total
    assert val.augment is None
    batches = val.fixed_batches(max_tiles=6, batch_size=4)
    assert 1 <= len(batches) <= 2 and all((b.weights > 0).any() for b in batches)
    for b in batches:
        assert (b.weights > 0).flatten(1).any(1).all()
    # new annotations keep the split, and the validation sampler follows
    more = targets.weights.copy()
    more[:] = np.where(more > 0, more, 0)
    sampler.set_targets(0, Targets(targets.target, more * 2, targets.mask))
    np.testing.assert_array_equal(val.targets[0].weights > 0, val_w > 0)
    np.testing.assert_allclose(val.targets[0].weights, 2 * val_w)
    with pytest.raises(ValueError, match="already split"):
        sampler.split_validation(0.1)


def test_painted_cell_diameter():
    a = np.zeros((60, 60), np.uint16)
    assert painted_cell_diameter(a) is None
    a[:5, :5] = 1  # background only
    assert painted_cell_diameter([a]) is None
    a[10:20, 10:20] = 2  # 100 px -> 11.28 px
    a[30:50, 30:50] = 3  # 400 px -> 22.57 px
    a[40:60, 0:20] = 4  # cut by the border: left out while whole cells are painted
    assert painted_cell_diameter(a) == pytest.approx(2 * np.sqrt(250 / np.pi))
    b = np.zeros_like(a)
    b[0:10, 0:30] = 2  # only a cut cell on this plane: counted when nothing else is
    assert painted_cell_diameter(b) == pytest.approx(2 * np.sqrt(300 / np.pi))
    # each plane's cells count (the same id on two planes is two cells): 100, 400, 400 px
    c = np.zeros_like(a)
    c[5:25, 5:25] = 2
    assert painted_cell_diameter([a, c]) == pytest.approx(2 * np.sqrt(400 / np.pi))
    with pytest.raises(ValueError, match="2D"):
        painted_cell_diameter([np.zeros((2, 4, 4), np.uint16)])
