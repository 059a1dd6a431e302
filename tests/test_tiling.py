"""Overlap-tile prediction: seamless results, shapes, inputs, stacks, precision and errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_unet.common.devices import cpu_has_fast_bf16, resolve_precision, select_device
from napari_unet.model.normalization import percentile_normalize
from napari_unet.model.unet import UNet
from napari_unet.predict.plan import choose_tile_shape, mirror_indices
from napari_unet.predict.tiling import (
    iter_predict_stack,
    iter_predict_tiled,
    normalization_range,
    predict_stack,
    predict_tiled,
)

FP32 = dict(precision="fp32")


def _net(seed=0, **kwargs) -> UNet:
    torch.manual_seed(seed)
    kwargs.setdefault("depth", 3)
    kwargs.setdefault("base_channels", 4)
    return UNet(**kwargs)


def _image(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks gain nothing from two threads, and one thread is immune to the spin-wait
    slow-downs of OpenMP when the machine is busy (many small ops)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def valid_net():
    return _net()


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_seamless_across_tile_shapes_and_batch_sizes(padding):
    net = _net(padding=padding)
    image = _image((157, 203))
    whole = predict_tiled(net, image, tile_shape=(1000, 1000), **FP32)
    assert whole.shape == (2, 157, 203) and whole.dtype == np.float32
    np.testing.assert_allclose(whole.sum(0), 1.0, atol=1e-5)
    # (150, 188) is rounded up to the valid (156, 188); tiles overlap the border differently
    tiles = [(150, 188), (252, 156)] if padding == "valid" else [(160, 192), (256, 160)]
    for tile, batch in [(tiles[0], 1), (tiles[0], 3), (tiles[1], 2)]:
        tiled = predict_tiled(net, image, tile_shape=tile, batch_size=batch, **FP32)
        assert np.abs(tiled - whole).max() <= 1e-4, (tile, batch)


def test_whole_image_equals_one_forward_on_the_mirrored_image(valid_net):
    """The placement: image pixel (y, x) is output pixel (y, x) of the net run on the image
    mirrored by the context at the top/left (no duplicated border pixel)."""
    net = valid_net
    image = _image((61, 75), seed=1)
    m = net.margin()
    tile = net.valid_input_shape((61 + 2 * m, 75 + 2 * m))
    padded = np.pad(image, ((m, tile[0] - 61 - m), (m, tile[1] - 75 - m)), mode="reflect")
    with torch.inference_mode():
        ref = torch.softmax(net(torch.from_numpy(padded)[None, None]), 1)[0].numpy()
    got = predict_tiled(net, image, tile_shape=(100, 100), **FP32)
    np.testing.assert_allclose(got, ref[:, :61, :75], atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (29, 1), (2, 3), (9, 130), (131, 17)])
def test_small_odd_and_one_pixel_images(valid_net, shape):
    image = _image(shape, seed=2)
    probs = predict_tiled(valid_net, image, tile_shape=(116, 116), **FP32)
    assert probs.shape == (2, *shape)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    whole = predict_tiled(valid_net, image, tile_shape=(500, 500), **FP32)
    assert np.abs(probs - whole).max() <= 1e-4


def testmirror_indices():
    np.testing.assert_array_equal(mirror_indices(-3, 7, 4), [3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
    np.testing.assert_array_equal(mirror_indices(-2, 3, 1), [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(mirror_indices(-4, 6, 2), [0, 1, 0, 1, 0, 1, 0, 1, 0, 1])


def test_multichannel_image_and_channel_errors():
    net = _net(in_channels=3, n_classes=3, depth=2)
    image = np.stack([_image((50, 60), seed=s) for s in range(3)])
    probs = predict_tiled(net, image, **FP32)
    assert probs.shape == (3, 50, 60)
    # the same RGB image with channels last through predict_stack
    rgb = np.moveaxis(image, 0, -1).copy()
    np.testing.assert_allclose(predict_stack(net, rgb, axes="YXC", **FP32), probs, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(C, Y, X\) with C = 3.*got C = 50.*axes='YXC'"):
        predict_tiled(net, rgb, **FP32)
    with pytest.raises(ValueError, match=r"1 channel.*expects 3 input channel"):
        predict_tiled(net, image[0], **FP32)
    with pytest.raises(ValueError, match=r"\(2, 50, 60\).*C = 3.*got C = 2"):
        predict_tiled(net, image[:2], **FP32)


def test_bad_inputs_raise_clear_errors(valid_net):
    with pytest.raises(ValueError, match=r"\(Y, X\) or \(C, Y, X\).*\(5,\)"):
        predict_tiled(valid_net, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"\(Y, X\) or \(C, Y, X\).*\(1, 1, 8, 8\).*predict_stack"):
        predict_tiled(valid_net, np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"empty.*\(0, 10\)"):
        predict_tiled(valid_net, np.zeros((0, 10), np.float32))
    image = _image((40, 40))
    image[30, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_tiled(valid_net, image, **FP32)
    with pytest.raises(TypeError, match="complex"):
        predict_tiled(valid_net, np.zeros((8, 8), np.complex64))
    with pytest.raises(ValueError, match="precision"):
        predict_tiled(valid_net, _image((8, 8)), precision="int8")
    with pytest.raises(ValueError, match="too small.*smallest tile"):
        predict_tiled(valid_net, _image((80, 80)), tile_shape=(60, 60))
    with pytest.raises(ValueError, match=r"out has shape \(2, 8, 9\), expected \(2, 8, 8\)"):
        predict_tiled(valid_net, _image((8, 8)), out=np.zeros((2, 8, 9), np.float32))
    with pytest.raises(ValueError, match="axes 'ZXY' must end with Y, X"):
        predict_stack(valid_net, np.zeros((2, 8, 8)), axes="ZXY")
    with pytest.raises(ValueError, match="axes 'YX' name 2 axes but data has 3"):
        predict_stack(valid_net, np.zeros((2, 8, 8)), axes="YX")
    with pytest.raises(TypeError, match="napari_unet.UNet"):
        predict_tiled(torch.nn.Conv2d(1, 2, 3), _image((8, 8)))


def test_nan_found_by_normalization(valid_net):
    net = _net()
    net.metadata["normalization"] = {"kind": "percentile", "low": 1.0, "high": 99.8}
    image = _image((40, 40))
    image[::3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_tiled(net, image, **FP32)


def test_normalization_from_metadata():
    net = _net()
    raw = (_image((70, 90)) * 3000 + 200).astype(np.uint16)
    plain = predict_tiled(net, percentile_normalize(raw, 1.0, 99.8), **FP32)
    net.metadata["normalization"] = {"kind": "percentile", "low": 1.0, "high": 99.8}
    np.testing.assert_allclose(predict_tiled(net, raw, tile_shape=(100, 100), **FP32), plain, atol=1e-4)
    unnormalized = predict_tiled(net, raw, normalize=False, **FP32)
    assert np.abs(unnormalized - plain).max() > 1e-3


def test_one_plane_predicted_as_within_its_stack():
    net = _net()
    net.metadata["normalization"] = {"kind": "percentile", "low": 1.0, "high": 99.8}
    dim = (_image((64, 80), seed=1) * 500 + 100).astype(np.uint16)  # a deep, dim slice ...
    bright = (_image((64, 80), seed=2) * 4000 + 300).astype(np.uint16)  # ... in a bright stack
    stack = np.stack([bright, dim, bright])
    whole = predict_stack(net, stack, axes="ZYX", **FP32)
    own = predict_tiled(net, dim, **FP32)  # the plane's own percentiles: not what the stack gives
    assert np.abs(own - whole[:, 1]).max() > 1e-3
    lows, highs = normalization_range(net, stack, axes="ZYX")
    np.testing.assert_allclose(predict_tiled(net, dim, normalize=(lows, highs), **FP32), whole[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="one per channel"):
        predict_tiled(net, dim, normalize=([0.0, 1.0], [2.0, 3.0]), **FP32)
    net.metadata = {}
    assert normalization_range(net, stack, axes="ZYX") is None


def test_dask_zarr_memmap_inputs_and_outputs(valid_net, tmp_path):
    import dask.array as da
    import zarr

    image = _image((150, 130), seed=3)
    ref = predict_tiled(valid_net, image, tile_shape=(124, 124), **FP32)
    z = zarr.open_array(str(tmp_path / "in.zarr"), mode="w", shape=image.shape, chunks=(40, 40), dtype="f4")
    z[:] = image
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="w", shape=(2, 150, 130), chunks=(2, 64, 64), dtype="f4")
    got = predict_tiled(valid_net, z, tile_shape=(124, 124), out=out, **FP32)
    assert got is out
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-6)
    d = da.from_array(image, chunks=(50, 50))
    np.testing.assert_allclose(predict_tiled(valid_net, d, tile_shape=(124, 124), **FP32), ref, atol=1e-6)
    mm = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32, shape=(2, 150, 130))
    predict_tiled(valid_net, image, tile_shape=(124, 124), out=mm, **FP32)
    np.testing.assert_allclose(mm, ref, atol=1e-6)


def test_stacks_plane_by_plane_with_one_progress_total(valid_net):
    stack = np.stack([_image((60, 70), seed=s) for s in range(6)]).reshape(2, 3, 60, 70)
    calls = []
    probs = predict_stack(
        valid_net, stack, axes="TZYX", tile_shape=(124, 124), progress=lambda d, t: calls.append((d, t)), **FP32
    )
    assert probs.shape == (2, 2, 3, 60, 70)
    plane = predict_tiled(valid_net, stack[1, 2], tile_shape=(124, 124), **FP32)
    np.testing.assert_allclose(probs[:, 1, 2], plane, atol=1e-6)
    totals = {t for _, t in calls}
    assert len(totals) == 1
    total = totals.pop()
    step = valid_net.output_shape((124, 124))[0] // 8 * 8  # kept pixels per tile: 32
    assert total == 6 * len(range(0, 60, step)) * len(range(0, 70, step))
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # a channel axis in the middle
    net2 = _net(in_channels=2, depth=2)
    zcyx = np.stack([stack[0], stack[1]], axis=1)  # (Z=3, C=2, Y, X)
    p2 = predict_stack(net2, zcyx, axes="ZCYX", **FP32)
    assert p2.shape == (2, 3, 60, 70)
    np.testing.assert_allclose(p2[:, 1], predict_tiled(net2, zcyx[1], **FP32), atol=1e-6)
    # the whole stack is normalized alike (per channel, not per plane)
    net2.metadata["normalization"] = {"kind": "percentile", "low": 0.0, "high": 100.0}
    bright = zcyx.copy()
    bright[0] *= 0.5
    p3 = predict_stack(net2, bright, axes="ZCYX", **FP32)
    lo = bright.min(axis=(0, 2, 3), keepdims=True)[0]
    hi = bright.max(axis=(0, 2, 3), keepdims=True)[0]
    net2.metadata["normalization"] = None
    manual = predict_tiled(net2, (bright[0] - lo) / (hi - lo), **FP32)
    np.testing.assert_allclose(p3[:, 0], manual, atol=1e-4)


def test_generator_form_returns_the_result_and_can_be_cancelled(valid_net):
    image = _image((120, 120))

    def consume():
        return (yield from iter_predict_tiled(valid_net, image, tile_shape=(156, 156), **FP32))

    gen = consume()
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert result.shape == (2, 120, 120)
    assert events[0] == (0, 4) and events[-1] == (4, 4)  # 64 kept pixels per tile
    # cancel after the first batch: closing the generator stops the worker threads
    gen = iter_predict_stack(valid_net, np.stack([image] * 3), axes="ZYX", tile_shape=(156, 156), **FP32)
    assert next(gen) == (0, 12)
    next(gen)
    gen.close()


def test_model_left_as_it_was(valid_net):
    net = _net(dropout=0.5)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    predict_tiled(net, _image((40, 40)))
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_auto_tile_shape():
    paper = UNet()
    tile = choose_tile_shape(paper, (2048, 2048), device="cpu", precision="bf16", budget_bytes=4 << 30)
    assert paper.output_shape(tile)  # valid
    assert tile[0] > 1000  # bigger than the paper's 572: less work on context
    # small images get one tile just covering them
    assert choose_tile_shape(paper, (10, 30), device="cpu") == paper.input_shape((20, 36))
    # a small budget gives a smaller tile, still valid
    small = choose_tile_shape(paper, (2048, 2048), device="cpu", precision="fp32", budget_bytes=400 << 20)
    assert small[0] < tile[0] and paper.output_shape(small)
    assert small[0] * small[1] * 9 * 64 * 4 <= 400 << 20
    # balanced: 2100 px need three tiles per axis, of equal size
    tile = choose_tile_shape(paper, (2100, 2100), device="cpu", budget_bytes=4 << 30)
    step = paper.output_shape(tile)[0] // 16 * 16
    assert tile[0] == tile[1] and step * 3 >= 2100 and step < 2100 / 3 + 16
    # a strip: the short axis is covered by one tile, the long one gets the pixels left
    tile = choose_tile_shape(paper, (300, 5000), device="cpu", budget_bytes=4 << 30)
    assert tile[0] == paper.input_shape((308, 308))[0] and tile[1] > 1212
    # the default tile is used by predict_tiled
    net = _net()
    image = _image((90, 50))
    np.testing.assert_allclose(
        predict_tiled(net, image, **FP32), predict_tiled(net, image, tile_shape=(500, 500), **FP32), atol=1e-4
    )


def test_select_device_and_precision():
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert select_device().type == "cuda"
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        assert select_device() == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        select_device("gpu please")
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) is (torch.bfloat16 if cpu_has_fast_bf16() else None)


def _blobs(shape, rng):
    x = ndi.gaussian_filter(rng.standard_normal(shape), 4)
    mask = x > 0.02
    image = mask.astype(np.float32) * 0.6 + 0.25 * rng.standard_normal(shape).astype(np.float32)
    return ndi.gaussian_filter(image, 1).astype(np.float32), mask


def test_bf16_keeps_the_argmax_of_a_trained_net():
    """bf16 autocast (what "auto" picks on a bf16 CPU) agrees with fp32 on >= 99.9% of pixels."""
    rng = np.random.default_rng(0)
    image, mask = _blobs((256, 256), rng)
    net = _net(depth=2, base_channels=4)
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    tile = 92
    out = net.output_shape(tile)[0]
    m = (tile - out) // 2
    for _ in range(40):
        ys, xs = rng.integers(0, 256 - tile, 4), rng.integers(0, 256 - tile, 4)
        x = torch.from_numpy(np.stack([image[y : y + tile, x : x + tile] for y, x in zip(ys, xs)])[:, None])
        t = np.stack([mask[y + m : y + m + out, x + m : x + m + out] for y, x in zip(ys, xs)])
        loss = torch.nn.functional.cross_entropy(net(x), torch.from_numpy(t.astype(np.int64)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test, truth = _blobs((200, 230), np.random.default_rng(1))
    fp32 = predict_tiled(net, test, precision="fp32").argmax(0)
    assert (fp32 == truth).mean() > 0.9  # the net learned the task: the comparison means something
    bf16 = predict_tiled(net, test, precision="bf16").argmax(0)
    assert (fp32 == bf16).mean() >= 0.999


def test_core_modules_do_not_import_qt():
    code = (
        "import sys, napari_unet.model.unet, napari_unet.predict.tiling, napari_unet.labels.instances\n"
        "bad = [m for m in ('qtpy', 'napari', 'magicgui', 'PyQt5', 'PyQt6') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_inference_mode_does_not_leak_between_progress_events(valid_net):
    gen = iter_predict_tiled(valid_net, _image((120, 120)), tile_shape=(156, 156), **FP32)
    for _ in gen:
        assert not torch.is_inference_mode_enabled()
        assert torch.is_grad_enabled()


def test_a_nan_in_a_lazy_image_is_reported_where_it_is():
    import zarr

    from napari_unet import UNet, predict_tiled

    image = np.random.default_rng(0).random((300, 300), dtype=np.float32)
    image[200, 100] = np.nan
    lazy = zarr.create_array(store={}, shape=image.shape, chunks=(128, 128), dtype=image.dtype)
    lazy[:] = image
    with pytest.raises(ValueError, match=r"at y=200, x=100"):
        predict_tiled(UNet(depth=2, base_channels=4), lazy)
