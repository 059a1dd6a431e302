"""Test-time augmentation (``tta``): flipped views of each tile, averaged, stay seamless and exact."""

import numpy as np
import pytest

from napari_unet import UNet
from napari_unet.predict.tiling import predict_block, predict_stack, predict_tiled


@pytest.fixture(scope="module")
def net():
    import torch

    torch.manual_seed(0)
    return UNet(depth=2, base_channels=4)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).random((64, 96), dtype=np.float32)


def _flipped_mean(net, image):
    """The mean of the predictions of the four flipped images, each flipped back."""
    views = []
    for fy in (False, True):
        for fx in (False, True):
            im = image[::-1] if fy else image
            im = im[:, ::-1] if fx else im
            p = predict_tiled(net, np.ascontiguousarray(im), precision="fp32")
            p = p[:, ::-1] if fy else p
            views.append(p[:, :, ::-1] if fx else p)
    return np.mean(views, axis=0)


def test_four_views_are_the_mean_of_the_flipped_images(net, image):
    plain = predict_tiled(net, image, precision="fp32")
    averaged = predict_tiled(net, image, precision="fp32", tta=4)
    assert np.abs(averaged - _flipped_mean(net, image)).max() < 1e-5
    assert np.abs(averaged - plain).max() > 1e-3  # the views do differ: an untrained net is not symmetric
    np.testing.assert_allclose(averaged.sum(0), 1.0, atol=1e-5)


def test_two_views_add_the_left_right_mirror(net, image):
    mirrored = predict_tiled(net, np.ascontiguousarray(image[:, ::-1]), precision="fp32")[:, :, ::-1]
    expected = (predict_tiled(net, image, precision="fp32") + mirrored) / 2
    assert np.abs(predict_tiled(net, image, precision="fp32", tta=2) - expected).max() < 1e-5


def test_flipped_views_stay_seamless_and_exact_by_block(net):
    image = np.random.default_rng(2).random((90, 75), dtype=np.float32)  # not a multiple of the pooling
    whole = predict_tiled(net, image, precision="fp32", tta=4)
    tiled = predict_tiled(net, image, precision="fp32", tta=4, tile_shape=(44, 36))
    assert np.abs(tiled - whole).max() < 1e-4
    part = predict_block(net, image, axes="YX", block=((), slice(32, 90), slice(16, 60)), precision="fp32", tta=4)
    assert np.abs(part - whole[:, 32:90, 16:60]).max() < 1e-4


@pytest.mark.parametrize("bad", [0, 3, 8, 2.5, "4", True])
def test_other_view_counts_are_refused_in_plain_words(net, image, bad):
    with pytest.raises((ValueError, TypeError), match="tta"):
        predict_tiled(net, image, tta=bad)


def _tiny_model():
    net = UNet(depth=2, base_channels=4).eval()
    net.metadata = {"mode": "instances", "cell_diameter": 6.0}
    return net


def test_the_batch_job_passes_its_views_to_both_passes(engines):
    from napari_unet.cluster.batch import batch_job

    items = [("a", np.random.default_rng(3).random((40, 30), dtype=np.float32), "YX", None)]
    list(batch_job(_tiny_model(), items, "instances", device="cpu"))
    assert engines == [1, 1]  # the job's default: the API's
    del engines[:]
    list(batch_job(_tiny_model(), items, "instances", device="cpu", tta=4))
    assert engines == [4, 4]  # the full-scale prediction and the half-scale pass


def test_cli_predict_averages_the_plugin_views_unless_told(engines, tmp_path, capsys):
    from napari_unet.cli import main as cli
    from napari_unet.model.files import save_model
    from napari_unet.files.images import write_image
    from napari_unet.predict.views import PLUGIN_TTA

    model = tmp_path / "m.unet"
    save_model(_tiny_model(), model)
    write_image(tmp_path / "a.tif", np.random.default_rng(4).random((36, 44)).astype(np.float32))
    base = ["predict", "-m", str(model), str(tmp_path / "a.tif"), "-q", "--device", "cpu"]
    assert cli.main(base + ["-o", str(tmp_path / "default")]) == 0
    assert engines == [PLUGIN_TTA, PLUGIN_TTA]
    del engines[:]
    assert cli.main(base + ["-o", str(tmp_path / "once"), "--tta", "1"]) == 0
    assert engines == [1, 1]
    del engines[:]
    assert cli.main(base + ["-o", str(tmp_path / "four"), "--tta", "4"]) == 0
    assert cli.main(base + ["-o", str(tmp_path / "auto"), "--tta", "AUTO"]) == 0
    assert engines == [4, 4, "auto", "auto"]
    with pytest.raises(SystemExit) as exc:
        cli.main(base + ["-o", str(tmp_path / "bad"), "--tta", "3"])
    assert exc.value.code == 2 and "--tta" in capsys.readouterr().err



def _auto_engines(monkeypatch):
    """The tile engines of the predictions to come (to read their planes' disagreement)."""
    import napari_unet.predict.tiling as tiling

    made = []

    class Engine(tiling.TileEngine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tiling, "TileEngine", Engine)
    return made


def test_auto_views_are_two_or_four_by_each_images_disagreement(net, monkeypatch):
    # tta="auto": two views everywhere, and the other two flips on the planes whose first two
    # views disagree on average by more than AUTO_DISAGREEMENT: a decision of the whole plane,
    # so that any tiling gives the same probabilities
    import napari_unet.predict.views as views

    rng = np.random.default_rng(5)
    stack = rng.random((3, 90, 75), dtype=np.float32)
    stack[1] = np.round(stack[1] * 3) / 3  # planes of other textures: other disagreements
    stack[2] = np.linspace(0, 1, 75, dtype=np.float32)[None]
    tiles = (44, 36)
    two = predict_stack(net, stack, axes="ZYX", precision="fp32", tta=2, tile_shape=tiles)
    four = predict_stack(net, stack, axes="ZYX", precision="fp32", tta=4, tile_shape=tiles)
    engines = _auto_engines(monkeypatch)

    def auto(tile_shape=tiles, **kwargs):
        return predict_stack(net, stack, axes="ZYX", precision="fp32", tta="auto", tile_shape=tile_shape, **kwargs)

    monkeypatch.setattr(views, "AUTO_DISAGREEMENT", 1.0)  # no plane disagrees that much
    np.testing.assert_array_equal(auto(), two)
    means = {plane[0]: total / n for plane, (total, n) in engines[-1].disagreement.items()}
    assert sorted(means) == [0, 1, 2] and engines[-1].four_view_planes == []
    monkeypatch.setattr(views, "AUTO_DISAGREEMENT", 0.0)  # every plane does
    assert np.abs(auto() - four).max() < 1e-6
    # a threshold between the planes' disagreements: some planes take four views, the others two
    cut = float(np.median(list(means.values())))
    assert len(set(means.values())) == 3
    monkeypatch.setattr(views, "AUTO_DISAGREEMENT", cut)
    steps = []
    mixed = auto(progress=lambda done, total: steps.append(done / total))
    assert steps == sorted(steps) and steps[-1] == 1.0 and len(steps) > 3  # the second sweep counted on
    unsure = [plane for plane, mean in means.items() if mean > cut]
    assert [p[0] for p in engines[-1].four_view_planes] == unsure and 0 < len(unsure) < 3
    for plane in range(3):
        expected = four if plane in unsure else two
        assert np.abs(mixed[:, plane] - expected[:, plane]).max() < 1e-6, plane
    for other in [(44, 44), (60, 36), None]:  # another tiling: the same decisions, the same result
        assert np.abs(auto(other) - mixed).max() < 1e-5


def test_auto_views_are_refused_by_a_block_in_plain_words(net, image):
    # a block cannot see its image's disagreement (the cluster averages four views instead:
    # tests/test_distributed.py)
    with pytest.raises(ValueError, match="auto"):
        predict_block(net, image, axes="YX", block=((), slice(0, 32), slice(0, 48)), tta="auto")
    with pytest.raises(ValueError, match="'auto'"):
        predict_tiled(net, image, tta="al")
