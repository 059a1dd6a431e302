"""Test-time augmentation (``tta``): flipped views of each tile, averaged, stay seamless and exact."""

import numpy as np
import pytest

from napari_unet import UNet
from napari_unet.predict.tiling import predict_block, predict_tiled


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
    with pytest.raises(SystemExit) as exc:
        cli.main(base + ["-o", str(tmp_path / "bad"), "--tta", "3"])
    assert exc.value.code == 2 and "--tta" in capsys.readouterr().err
