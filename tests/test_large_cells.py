"""The half-scale pass: cells much larger than the painted ones, from a second look at half size."""

import numpy as np
import pytest

from napari_unet import UNet, to_labels
from napari_unet.common.progress import drive
from napari_unet.labels.large_cells import add_large_cells, applies, half_scale, iter_large_cells, predict_half_scale
from napari_unet.labels.options import LabelOptions
from napari_unet.predict.options import PredictOptions


def _probabilities(cell_mask):
    p = np.where(cell_mask, 0.9, 0.1).astype(np.float32)
    return np.stack([1 - p, p])


def _disk(shape, center, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_half_scale_halves_y_and_x_only_and_rounds_up():
    assert half_scale(np.zeros((5, 7))).shape == (3, 4)
    assert half_scale(np.zeros((2, 3, 6, 8), np.uint16)).shape == (2, 3, 3, 4)
    stripes = np.tile([0.0, 100.0], (8, 4))  # 1-px stripes: anti-aliased to their mean, not sampled
    assert np.allclose(half_scale(stripes), 50.0, atol=10)


def test_a_large_cell_seen_as_a_ring_is_taken_from_half_scale_and_small_cells_keep_their_labels():
    shape = (96, 96)
    large = _disk(shape, (48, 40), 20)  # 40 px across: five times the painted 8 px
    ring = large & ~_disk(shape, (48, 40), 14)  # what the full scale finds: its rim
    small = [_disk(shape, (10, 85), 4), _disk(shape, (85, 85), 4)]
    full = to_labels(_probabilities(ring | small[0] | small[1]), cell_diameter=8.0)
    half = _probabilities(large | small[0] | small[1])[:, ::2, ::2]  # half scale: the whole cell
    fused = add_large_cells(full, half, cell_diameter=8.0)
    big_id = np.bincount(fused[large]).argmax()
    assert big_id > 0 and (fused[large] == big_id).mean() > 0.95  # one object covers the whole cell
    assert len(np.unique(fused[large])) <= 2  # no fragment of the ring left inside it
    for disk in small:  # the painted-size cells: exactly their full-scale labels
        ids = np.unique(full[disk])
        assert len(ids) == 1 and ids[0] > 0
        assert np.array_equal(fused[disk] > 0, full[disk] > 0) and len(np.unique(fused[disk])) == 1
    assert int(fused.max()) == 3 and set(np.unique(fused)) == {0, 1, 2, 3}


def _four_cells_and_their_blob(shape=(64, 64)):
    full = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate([(10, 10), (10, 26), (26, 10), (26, 26)], start=1):
        full[y : y + 15, x : x + 15] = k  # four 15-px pieces with 1-px gaps: covering the blob
    blob = np.zeros(shape, bool)
    blob[10:41, 10:41] = True
    return full, _probabilities(blob)[:, ::2, ::2]  # half scale: one 31-px object, 4 diameters wide


def test_a_clump_the_full_scale_split_well_is_kept_when_half_scale_merges_it():
    full, merged = _four_cells_and_their_blob()
    merged[:, 12:14, 5:21] = [[[0.45]], [[0.55]]]  # half scale sees the gaps between the cells, unsure
    merged[:, 5:21, 12:14] = [[[0.45]], [[0.55]]]
    fused = add_large_cells(full, merged, cell_diameter=8.0)
    assert np.array_equal(fused, full)


def test_a_clump_of_cells_of_the_painted_size_is_kept_even_where_half_scale_is_sure_of_one_blob():
    full, merged = _four_cells_and_their_blob()  # pieces of 225 px: cells of 14 px are 154 px
    assert np.array_equal(add_large_cells(full, merged, cell_diameter=14.0), full)


def test_a_pair_of_large_cells_is_kept_even_where_half_scale_is_sure_of_one_blob():
    full, merged = _four_cells_and_their_blob()
    full[full == 2], full[full == 4] = 1, 3  # two 31 x 15 cells, one above the other, 1-px gap: two pieces
    full[10:25, 25], full[26:41, 25] = 1, 3
    fused = add_large_cells(full, merged, cell_diameter=8.0)  # ids renumbered 1..n: compare the objects
    top, bottom = np.unique(fused[full == 1]), np.unique(fused[full == 3])
    assert len(top) == len(bottom) == 1 and 0 < top[0] != bottom[0] > 0 and np.array_equal(fused > 0, full > 0)


def test_pieces_cut_where_half_scale_is_sure_of_one_cell_become_that_cell():
    full, merged = _four_cells_and_their_blob()  # cut along lines the half scale finds inside a cell (0.9)
    fused = add_large_cells(full, merged, cell_diameter=8.0)
    assert len(np.unique(fused)) == 2 and (fused[10:41, 10:41] > 0).all()


def test_ids_stay_unique_over_the_planes_of_a_stack():
    shape = (48, 48)
    large = _disk(shape, (24, 24), 16)
    ring = large & ~_disk(shape, (24, 24), 11)
    full = np.stack([to_labels(_probabilities(ring), cell_diameter=6.0), to_labels(_probabilities(ring),
                                                                                    cell_diameter=6.0)])
    half = np.stack([_probabilities(large)[:, ::2, ::2]] * 2, axis=1)
    fused = add_large_cells(full, half, cell_diameter=6.0)
    assert fused.shape == full.shape and fused.dtype == np.int32
    assert (fused[0][large] == 1).mean() > 0.95 and (fused[1][large] == 2).mean() > 0.95
    assert set(np.unique(fused)) == {0, 1, 2}  # one cell per plane, numbered on from the plane before


def test_bad_inputs_are_refused_in_plain_words():
    labels = np.zeros((10, 10), np.int32)
    with pytest.raises(ValueError, match="typical cell diameter"):
        add_large_cells(labels, np.zeros((2, 5, 5), np.float32), cell_diameter=None)
    with pytest.raises(ValueError, match="do not fit"):
        add_large_cells(labels, np.zeros((2, 10, 10), np.float32), cell_diameter=8.0)
    # what it cannot honour is refused, not dropped without a word
    with pytest.raises(ValueError, match="not 3D objects"):
        add_large_cells(labels, np.zeros((2, 5, 5), np.float32), cell_diameter=8.0, three_d=True, spacing=(2, 1, 1))
    with pytest.raises(TypeError, match=r"unknown label options \['out'\]"):
        add_large_cells(labels, np.zeros((2, 5, 5), np.float32), cell_diameter=8.0, out=np.zeros_like(labels))


def test_the_pass_applies_to_instances_of_planes_with_a_known_diameter_only():
    assert applies(LabelOptions.of({"mode": "instances", "cell_diameter": 12.0}))
    assert not applies(LabelOptions.of({"mode": "instances"}))  # no painted size known: nothing to call large
    assert not applies(LabelOptions.of({"mode": "classes", "cell_diameter": 12.0}))
    assert not applies(LabelOptions.of({"mode": "instances", "cell_diameter": 12.0, "three_d": True}))
    labels = np.ones((8, 8), np.int32)
    gen = iter_large_cells(object(), np.zeros((8, 8)), labels, LabelOptions(mode="classes"), PredictOptions(), axes="YX")
    assert drive(gen) is labels  # not applied: nothing predicted, the labels come back as they were


def test_the_half_scale_prediction_has_half_the_shape_and_the_full_scale_normalization():
    torch = pytest.importorskip("torch")
    from napari_unet import normalization_range, predict_stack

    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4).eval()
    net.metadata = {"normalization": {"kind": "percentile", "low": 1.0, "high": 99.8}}
    rng = np.random.default_rng(0)
    stack = np.stack([rng.normal(100, 30, (50, 70)), rng.normal(300, 30, (50, 70))]).astype(np.float32)
    half = predict_half_scale(net, stack, axes="ZYX", precision="fp32")
    assert half.shape == (2, 2, 25, 35) and np.allclose(half.sum(0), 1, atol=1e-5)
    expected = predict_stack(net, half_scale(stack), axes="ZYX", precision="fp32",
                             normalize=normalization_range(net, stack, axes="ZYX"))
    assert np.allclose(half, expected, atol=1e-6)  # the percentiles of the full-scale stack
    own = predict_stack(net, half_scale(stack), axes="ZYX", precision="fp32")
    assert not np.allclose(own, expected, atol=1e-3)  # (its own percentiles would differ)


@pytest.fixture
def spy(monkeypatch):
    """Records the calls of the half-scale pass (shapes of labels and half-scale probabilities, options)."""
    import napari_unet.labels.large_cells as large_cells

    calls = []
    real = large_cells.fuse_large_cells

    def recording(labels, half, options, planes=None):
        calls.append((np.shape(labels), np.shape(half), options))
        return real(labels, half, options, planes)

    monkeypatch.setattr(large_cells, "fuse_large_cells", recording)
    return calls


def _tiny_model(diameter=6.0):
    pytest.importorskip("torch")
    net = UNet(depth=2, base_channels=4).eval()
    net.metadata = {"mode": "instances", "cell_diameter": diameter}
    return net


def test_batch_prediction_runs_the_pass_unless_switched_off(spy):
    from napari_unet.cluster.batch import batch_job

    net = _tiny_model()
    items = [("stack", np.random.default_rng(1).random((2, 40, 30)).astype(np.float32), "ZYX", None)]
    steps = list(batch_job(net, items, "instances", device="cpu"))
    results = [v for kind, v in steps if kind == "result"]
    progress = [v for kind, v in steps if kind == "progress"]  # one bar over both passes
    assert progress == sorted(progress) and progress[-1] == 1.0 and any(0.6 <= v <= 0.85 for v in progress)
    assert len(results) == 1 and results[0][1].shape == (2, 40, 30)
    assert spy == [((2, 40, 30), (2, 2, 20, 15), LabelOptions(mode="instances", cell_diameter=6.0))]
    list(batch_job(net, items, "instances", device="cpu", large_cells=False))
    list(batch_job(net, items, "classes", device="cpu"))  # classes: nothing to call a cell
    list(batch_job(net, items, "instances", device="cpu", three_d=True))  # 3D objects: not applied
    assert len(spy) == 1


def test_cli_predict_runs_the_pass_unless_no_large_cells(spy, tmp_path):
    from napari_unet.cli import main as cli
    from napari_unet.model.files import save_model
    from napari_unet.files.images import write_image

    model = tmp_path / "m.unet"
    save_model(_tiny_model(5.0), model)
    write_image(tmp_path / "a.tif", np.random.default_rng(2).random((36, 44)).astype(np.float32))
    base = ["predict", "-m", str(model), str(tmp_path / "a.tif"), "-q", "--device", "cpu"]
    assert cli.main(base + ["-o", str(tmp_path / "with")]) == 0
    assert spy == [((36, 44), (2, 18, 22), LabelOptions(mode="instances", cell_diameter=5.0))]
    assert cli.main(base + ["-o", str(tmp_path / "without"), "--no-large-cells"]) == 0
    assert len(spy) == 1 and (tmp_path / "without" / "a_labels.tif").exists()


def test_planes_without_room_for_a_large_cell_are_not_labelled_at_half_scale(monkeypatch):
    import napari_unet.labels.large_cells as large_cells

    shape = (96, 96)
    large = _disk(shape, (48, 40), 20)
    ring = large & ~_disk(shape, (48, 40), 14)
    small = _disk(shape, (10, 85), 4) | _disk(shape, (85, 85), 4) | _disk(shape, (85, 10), 4)
    unsure = np.zeros(shape, bool)
    unsure[60:90, 30:60] = True  # a wide region of cell probability 0.35: not a cell, yet room for one
    planes = [ring | small, small, small]
    full = np.stack([to_labels(_probabilities(m), cell_diameter=8.0) for m in planes])
    half = np.stack([_probabilities(large | small)[:, ::2, ::2], _probabilities(small)[:, ::2, ::2],
                     np.where(unsure, [[[0.65]], [[0.35]]], _probabilities(small))[:, ::2, ::2]], axis=1)
    labelled = []
    real = large_cells.to_labels_in_blocks
    monkeypatch.setattr(large_cells, "to_labels_in_blocks", lambda p, o: labelled.append(p.shape[1]) or real(p, o))
    fused = add_large_cells(full, half, cell_diameter=8.0)
    assert labelled == [2]  # the planes with the large cell and with the wide unsure region only
    monkeypatch.setattr(large_cells, "_may_hold_large_cells", lambda *args: True)
    assert np.array_equal(fused, add_large_cells(full, half, cell_diameter=8.0))  # the labels of every plane labelled
    big = np.bincount(fused[0][large]).argmax()
    assert big > 0 and (fused[0][large] == big).mean() > 0.95  # and the large cell found


def test_only_planes_showing_a_cell_much_larger_than_the_painted_ones_want_the_pass():
    from napari_unet.labels.large_cells import half_scale_wanted

    shape = (96, 96)
    small = _disk(shape, (10, 85), 4) | _disk(shape, (85, 85), 4) | _disk(shape, (85, 10), 4)
    ring = _disk(shape, (48, 40), 20) & ~_disk(shape, (48, 40), 14)  # a cell 5 diameters wide, its rim found

    def unsure(*boxes):  # cell probability 0.35 there: background by the argmax, but unsure
        p = _probabilities(small)
        for ys, xs in boxes:
            p[:, ys, xs] = [[[0.65]], [[0.35]]]
        return p

    wide = (slice(30, 60), slice(30, 60))  # 900 px: room for a cell 2.25 diameters wide (254 px)
    quarters = [(slice(y, y + 14), slice(x, x + 14)) for y in (30, 46) for x in (30, 46)]  # cut by 2-px lines
    probabilities = np.stack([_probabilities(small), _probabilities(small | ring), unsure(wide),
                              unsure((slice(30, 44), slice(30, 44))), unsure(*quarters)], axis=1)
    labels = np.stack([to_labels(probabilities[:, k], cell_diameter=8.0) for k in range(5)])
    assert [int(labels[k].max()) for k in range(5)] == [3, 4, 3, 3, 3]  # the unsure regions are left unlabelled
    wanted = half_scale_wanted(probabilities, labels, LabelOptions(mode="instances", cell_diameter=8.0))
    assert wanted.tolist() == [False, True, True, False, False]
    # a larger typical cell: the ring and the wide region are no longer much larger than it
    assert not half_scale_wanted(probabilities, labels, LabelOptions(mode="instances", cell_diameter=20.0)).any()


def test_a_plane_that_does_not_want_the_pass_keeps_its_labels_and_no_network_runs_for_none():
    from napari_unet.labels.large_cells import fuse_large_cells

    shape = (96, 96)
    large = _disk(shape, (48, 40), 20)
    ring = large & ~_disk(shape, (48, 40), 14)
    full = np.stack([to_labels(_probabilities(ring), cell_diameter=8.0)] * 2)
    half = np.stack([_probabilities(large)[:, ::2, ::2]] * 2, axis=1)
    options = LabelOptions(mode="instances", cell_diameter=8.0)
    fused = fuse_large_cells(full, half, options, planes=np.array([True, False]))
    assert (fused[0][large] == fused[0][48, 40]).mean() > 0.95 and fused[0][48, 40] > 0  # the whole cell
    assert np.array_equal(fused[1] > 0, ring) and fused[1].max() > fused[0].max()  # its rim, ids after plane 0's
    net = UNet(depth=2, base_channels=4).eval()
    net.register_forward_pre_hook(lambda *args: pytest.fail("the half-scale network ran"))
    no_plane = np.zeros(2, bool)
    assert drive(iter_large_cells(net, np.zeros((2, 96, 96), np.float32), full, options, PredictOptions(),
                                  axes="ZYX", planes=no_plane)) is full


@pytest.mark.parametrize("cell_p, runs", [(0.1, False), (0.4, True)])
def test_segment_runs_the_half_scale_network_only_where_a_plane_wants_it(cell_p, runs):
    """The network answers cell probability ``cell_p`` everywhere: background either way, sure
    (0.1) or unsure (0.4, a region as wide as the image)."""
    import torch
    from napari_unet.labels.segment import segment

    net = _tiny_model(6.0)
    logits = torch.tensor([np.log(1 - cell_p), np.log(cell_p)], dtype=torch.float32).view(1, 2, 1, 1)
    tiles = []
    net.register_forward_hook(lambda module, args, out: tiles.append(len(out)) or torch.zeros_like(out) + logits)
    image = np.random.default_rng(0).random((80, 80)).astype(np.float32)
    probabilities, labels = segment(net, image, axes="YX", device="cpu")
    assert labels.max() == 0 and np.allclose(probabilities[1], cell_p, atol=1e-5)
    with_pass = sum(tiles)
    tiles.clear()
    segment(net, image, axes="YX", device="cpu", large_cells=False)
    assert (with_pass > sum(tiles)) == runs  # the half-scale tiles come on top of the full scale's


@pytest.mark.parametrize("axes", ["ZYX", "TZYX", "ZCYX"])
def test_only_the_planes_that_want_the_pass_are_predicted_at_half_scale(monkeypatch, axes):
    import torch
    import napari_unet.labels.large_cells as large_cells

    rng = np.random.default_rng(3)
    shape = {"ZYX": (3, 40, 36), "TZYX": (2, 2, 40, 36), "ZCYX": (3, 2, 40, 36)}[axes]
    data = rng.random(shape).astype(np.float32)
    net = UNet(depth=2, base_channels=4, in_channels=2 if "C" in axes else 1).eval()
    net.metadata = {"mode": "instances", "cell_diameter": 6.0}
    planes = np.zeros(shape[:2] if axes == "TZYX" else shape[:1], bool)
    planes.flat[[1, -1]] = True
    labels = np.zeros((*planes.shape, 40, 36), np.int32)
    seen, fused = [], []
    net.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    monkeypatch.setattr(large_cells, "fuse_large_cells", lambda labels, half, options, planes=None:
                        fused.append((half, planes)) or labels)
    options = LabelOptions(mode="instances", cell_diameter=6.0)
    predict = PredictOptions(normalize=None, tta="auto")
    drive(iter_large_cells(net, data, labels, options, predict, axes=axes, planes=planes))
    assert sum(seen) == 2 * 2  # two planes, two views each (this net's views agree), one tile per plane
    half, kept = fused[0]
    assert np.array_equal(kept, planes) and half.shape[1:-2] == planes.shape
    whole = predict_half_scale(net, data, axes=axes, tta="auto")  # every plane, one normalization
    np.testing.assert_allclose(half[:, planes], whole[:, planes], atol=1e-6)
    assert not half[:, ~planes].any()  # the others are not looked at
