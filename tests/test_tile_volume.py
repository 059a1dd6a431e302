"""Overlap-tile prediction of volumes by a 3D U-Net: seamless (any tile shape gives the result of
the network on the whole mirror-padded volume), lazy inputs and outputs, stacks, views, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_unet.model.normalization import percentile_normalize
from napari_unet.model.unet import UNet
from napari_unet.predict.tiling import (
    iter_predict_stack,
    normalization_range,
    predict_block,
    predict_stack,
    predict_tiled,
)
from napari_unet.predict.options import PredictOptions
from napari_unet.predict.plan import bytes_per_pixel
from napari_unet.predict.tiling import iter_predict_with
from napari_unet.predict.volume import choose_volume_tile, iter_predict_volume, slab_window, tile_contexts

FP32 = dict(precision="fp32", device="cpu")
SHAPE = (11, 19, 14)  # no axis a multiple of the pooling factors (4, or 2 along Z with xy_only_pools=1)


def _net(padding="same", xy_only_pools=0, in_channels=1, seed=0) -> UNet:
    """A tiny 3D net in eval mode with random batch-norm statistics (so "same" nets are not trivial)."""
    torch.manual_seed(seed)
    net = UNet(spatial_dims=3, depth=2, base_channels=4, padding=padding, batch_norm=True,
               xy_only_pools=xy_only_pools, in_channels=in_channels)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return net.eval()


def _volume(shape=SHAPE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), 1.0).astype(np.float32) * 3 - 1


def _run(gen):
    """Drive a generator; returns (result, progress steps)."""
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as stop:
        return stop.value, steps


def _whole_padded(net: UNet, volume: np.ndarray, contexts=None) -> np.ndarray:
    """The network run once on the whole volume, mirror-padded (np.pad "reflect") by its context
    (``contexts``: that of each axis, default the network's), cropped."""
    volume = volume[None] if volume.ndim == 3 else volume
    same = net.config.padding == "same"
    contexts = contexts or net.margins()
    lefts = [-(-c // g) * g if same else net.margin(a) for a, (c, g) in enumerate(zip(contexts, net.pool_factors))]
    wanted = [size + 2 * left for size, left in zip(volume.shape[1:], lefts)]
    total = net.valid_input_shape(wanted)
    pad = [(0, 0)] + [(left, t - left - size) for left, t, size in zip(lefts, total, volume.shape[1:])]
    x = torch.from_numpy(np.pad(volume, pad, mode="reflect"))[None]
    with torch.inference_mode():
        probs = torch.softmax(net(x), dim=1)[0].numpy()
    starts = lefts if same else [0, 0, 0]
    return probs[(slice(None), *(slice(s, s + n) for s, n in zip(starts, volume.shape[1:])))]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("xy_only_pools", [0, 1])
def test_any_tile_shape_gives_the_whole_mirror_padded_volume(padding, xy_only_pools):
    net = _net(padding, xy_only_pools)
    volume = _volume()
    whole, steps = _run(iter_predict_volume(net, volume, **FP32))
    assert steps[-1] == (1, 1)  # the default: one tile just covering this small volume
    assert whole.shape == (2, *SHAPE) and whole.dtype == np.float32
    np.testing.assert_allclose(whole.sum(0), 1, atol=1e-5)
    assert np.abs(whole - _whole_padded(net, volume)).max() <= 1e-5  # seamless: the net on the padded volume
    assert whole.std() > 1e-3  # not a trivial net
    # tiles keeping fewer voxels than the volume along every axis (2 x 2 x 2 tiles and more)
    g = net.pool_factors
    for keep in [(8, 12, 8), (2 * g[0], 2 * g[1], 3 * g[2])]:
        tile = _tile_keeping(net, keep)
        tiled, steps = _run(iter_predict_volume(net, volume, tile_shape=tile, batch_size=3, **FP32))
        expected = np.prod([-(-n // k) for n, k in zip(SHAPE, keep)])
        assert steps[-1] == (expected, expected) and expected >= 8
        assert np.abs(tiled - whole).max() <= 1e-5, (padding, xy_only_pools, tile)


@pytest.mark.parametrize("xy_only_pools", [0, 1])
def test_a_preview_reads_a_third_of_the_context(xy_only_pools):
    """A preview (the Train widget's slab of a 3D network) is the network on the volume
    mirror-padded by a third of its context: a fraction of the voxels computed."""
    net = _net("same", xy_only_pools)
    volume = _volume((16, 40, 40))
    inputs = []
    hook = net.register_forward_pre_hook(lambda module, args: inputs.append(tuple(args[0].shape[2:])))
    try:
        full, _ = _run(iter_predict_volume(net, volume, **FP32))
        preview, _ = _run(iter_predict_volume(net, volume, context="preview", **FP32))
    finally:
        hook.remove()
    contexts = tile_contexts(net, "preview")
    assert all(0 < c < m for c, m in zip(contexts, net.margins()))
    assert np.prod(inputs[1]) < 0.5 * np.prod(inputs[0])  # one tile each, the preview's far smaller
    assert np.abs(preview - _whole_padded(net, volume, contexts)).max() <= 1e-5
    assert np.abs(full - _whole_padded(net, volume)).max() <= 1e-5
    # a valid-padded network takes all the context it needs: its preview is the seamless prediction
    valid = _net("valid", xy_only_pools)
    assert tile_contexts(valid, "preview") == (None, None, None)
    np.testing.assert_array_equal(_run(iter_predict_volume(valid, volume, context="preview", **FP32))[0],
                                  _run(iter_predict_volume(valid, volume, **FP32))[0])


def test_a_preview_context_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="context must be one of"):
        _run(iter_predict_volume(_net(), _volume(), context="half", **FP32))
    net2d = UNet(depth=2, base_channels=4)
    with pytest.raises(ValueError, match="is for 3D networks"):
        _run(iter_predict_with(net2d, _volume()[0], PredictOptions(context="preview"), axes="YX"))


@pytest.mark.parametrize("xy_only_pools", [0, 1])
def test_some_planes_get_what_the_whole_volume_gives_them_at_the_cost_of_those_planes(xy_only_pools):
    """``planes=`` (the Predict widget's slice in view of a 3D network): the planes' tiles read the
    planes around them as context, so the result is the whole volume's, whatever planes are asked
    (on the pooling grid or not) and whatever window of the stack holds a slab and its context."""
    net = _net("same", xy_only_pools)
    g = net.pool_factors[0]
    context = -(-net.margin(0) // g) * g
    n = 2 * context + 3 * g + 1  # deeper than a slab and its context: a window is not the whole stack
    volume = _volume((n, 19, 14))
    whole, _ = _run(iter_predict_volume(net, volume, normalize=False, **FP32))
    inputs = []
    hook = net.register_forward_pre_hook(lambda module, args: inputs.append(int(args[0].shape[2])))
    try:
        for planes in [(0, n), (1, 2), (g, 2 * g + 1), (context + 1, context + g), (n - 1, n)]:
            inputs.clear()
            part, _ = _run(iter_predict_with(net, volume, PredictOptions(planes=planes, normalize=False, **FP32),
                                             axes="ZYX"))
            assert part.shape == (2, planes[1] - planes[0], 19, 14)
            assert np.abs(part - whole[:, planes[0]:planes[1]]).max() <= 1e-5, planes
            # the tiles read the planes asked for (from the pooling grid on) and their context, no more
            assert sum(inputs) <= (planes[1] - planes[0] + g - 1) // g * g + g + 2 * context, (planes, inputs)
        for z in (0, n // 2, n - 1):
            (first, last), (start, stop) = slab_window(net, n, z, 2 * g)
            assert first % g == 0 and start <= z - first < stop and stop - start == 2 * g
            assert last - first < n  # the window is a part of the stack
            part, _ = _run(iter_predict_with(net, volume[first:last], PredictOptions(planes=(start, stop),
                                             normalize=False, **FP32), axes="ZYX"))
            assert np.abs(part - whole[:, first + start:first + stop]).max() <= 1e-5, z
        one, _ = _run(iter_predict_volume(net, volume, planes=(n - 2, n), normalize=False, **FP32))
        np.testing.assert_array_equal(one, _run(iter_predict_with(net, volume, PredictOptions(
            planes=(n - 2, n), normalize=False, **FP32), axes="ZYX"))[0])
        stack = np.stack([volume, volume[::-1]])  # a time series: the planes of every volume
        part, _ = _run(iter_predict_with(net, stack, PredictOptions(planes=(2, 5), normalize=False, **FP32),
                                         axes="TZYX"))
        flipped, _ = _run(iter_predict_volume(net, volume[::-1].copy(), normalize=False, **FP32))
        assert np.abs(part - np.stack([whole, flipped])[:, :, 2:5].transpose(1, 0, 2, 3, 4)).max() <= 1e-5
    finally:
        hook.remove()
    for bad, match in [((3, 3), "planes stop"), ((-1, 2), "planes start"), ((0, n + 1), "planes stop"), (5, "planes must be")]:
        with pytest.raises(ValueError, match=match):
            _run(iter_predict_with(net, volume, PredictOptions(planes=bad, **FP32), axes="ZYX"))
    with pytest.raises(ValueError, match="is for 3D networks"):
        _run(iter_predict_with(UNet(depth=2, base_channels=4), volume[0], PredictOptions(planes=(0, 1)), axes="YX"))


def _tile_keeping(net: UNet, keep) -> tuple[int, ...]:
    """The network input tile that keeps ``keep`` voxels (multiples of the pooling factors)."""
    if net.config.padding == "same":
        return tuple(k + 2 * (-(-net.margin(a) // g) * g) for a, (k, g) in enumerate(zip(keep, net.pool_factors)))
    return net.input_shape(keep)


def test_channels_first_volume_and_zarr_out(tmp_path):
    import zarr

    net = _net("valid", in_channels=2, seed=1)
    volume = np.stack([_volume(seed=2), _volume(seed=3)])  # (C, Z, Y, X)
    whole = predict_tiled(net, volume, **FP32)
    assert whole.shape == (2, *SHAPE)
    assert np.abs(whole - _whole_padded(net, volume)).max() <= 1e-5
    out = zarr.open_array(str(tmp_path / "p.zarr"), mode="w", shape=whole.shape, chunks=(2, 4, 8, 8), dtype="f4")
    source = zarr.open_array(str(tmp_path / "v.zarr"), mode="w", shape=volume.shape, chunks=(1, 4, 8, 8), dtype="f4")
    source[:] = volume
    written = predict_tiled(net, source, tile_shape=_tile_keeping(net, (8, 12, 8)), out=out, **FP32)
    assert written is out
    assert np.abs(out[:] - whole).max() <= 1e-5


def test_stack_of_volumes_equals_volume_by_volume():
    net = _net("valid", xy_only_pools=1)
    net.metadata = {"normalization": {"kind": "percentile", "low": 1.0, "high": 99.0}}
    stack = np.stack([_volume(seed=4), 5 * _volume(seed=5) + 2])  # (T, Z, Y, X)
    probs, steps = _run(iter_predict_stack(net, stack, axes="TZYX", **FP32))
    assert probs.shape == (2, 2, *SHAPE)
    assert steps[0] == (0, 2) and steps[-1] == (2, 2)  # one total over both volumes
    lows_highs = normalization_range(net, stack, axes="TZYX")  # the stack's percentiles
    for t in range(2):
        alone = predict_tiled(net, stack[t], normalize=lows_highs, **FP32)
        assert np.abs(probs[:, t] - alone).max() <= 1e-5
    # channels between Z and Y
    net2 = _net("same", in_channels=2, seed=6)
    zcyx = np.stack([_volume(seed=7), _volume(seed=8)], axis=1)
    assert np.abs(predict_stack(net2, zcyx, axes="ZCYX", **FP32)
                  - predict_tiled(net2, zcyx.transpose(1, 0, 2, 3), **FP32)).max() <= 1e-5


def test_normalization_tuple_true_and_false_agree():
    net = _net("same")
    net.metadata = {"normalization": {"kind": "percentile", "low": 1.0, "high": 99.8}}
    volume = 100 * _volume(seed=9) + 500
    by_model = predict_tiled(net, volume, **FP32)
    lows, highs = normalization_range(net, volume)
    given = predict_tiled(net, volume, normalize=(lows, highs), **FP32)
    done = predict_tiled(net, percentile_normalize(volume, 1.0, 99.8), normalize=False, **FP32)
    assert np.abs(by_model - given).max() <= 1e-6
    assert np.abs(by_model - done).max() <= 1e-5
    assert np.abs(by_model - predict_tiled(net, volume, normalize=False, **FP32)).max() > 1e-3


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_two_views_average_the_x_flipped_prediction(padding):
    net = _net(padding)
    volume = _volume((9, 18, 16))  # X a multiple of the pooling factor: its flip lies on the same grid
    plain = predict_tiled(net, volume, **FP32)
    flipped = predict_tiled(net, volume[..., ::-1].copy(), **FP32)[..., ::-1]
    tile = _tile_keeping(net, (8, 8, 8)) if padding == "valid" else None  # 12 tiles (cheap for a valid net)
    tta = predict_tiled(net, volume, tta=2, tile_shape=tile, **FP32)
    assert np.abs(tta - (plain + flipped) / 2).max() <= 1e-5
    assert np.abs(plain - flipped).max() > 1e-4  # the views differ


def test_auto_views_of_a_3d_network_decide_volume_by_volume(monkeypatch):
    # tta="auto" on a 3D network: each volume of a stack is one image, predicted with two views or,
    # where they disagree, four; the same whatever the tiles
    import napari_unet.predict.views as views
    from napari_unet.predict.tiling import predict_stack

    net = _net("same")
    stack = np.stack([_volume((9, 18, 16), seed=1), np.full((9, 18, 16), 0.5, np.float32)])  # T, Z, Y, X
    two = predict_stack(net, stack, axes="TZYX", tta=2, **FP32)
    four = predict_stack(net, stack, axes="TZYX", tta=4, **FP32)
    assert np.abs(two[:, 0] - four[:, 0]).max() > 1e-4
    monkeypatch.setattr(views, "AUTO_DISAGREEMENT", 0.0)
    assert np.abs(predict_stack(net, stack, axes="TZYX", tta="auto", **FP32) - four).max() <= 1e-5
    monkeypatch.setattr(views, "AUTO_DISAGREEMENT", 1.0)
    assert np.abs(predict_stack(net, stack, axes="TZYX", tta="auto", **FP32) - two).max() <= 1e-6


def test_default_tile_respects_the_budget_and_the_cpu_cap():
    net = UNet(spatial_dims=3, depth=3, base_channels=16, padding="same", batch_norm=True)
    small = choose_volume_tile(net, (20, 30, 30), device="cpu")
    assert small == (24 + 96, 32 + 96, 32 + 96)  # one tile just covering the volume
    big = choose_volume_tile(net, (500, 4000, 4000), device="cpu", budget_bytes=1 << 30)
    assert np.prod(big) * bytes_per_pixel(net, None) <= 1 << 30
    huge_budget = choose_volume_tile(net, (500, 4000, 4000), device="cpu", budget_bytes=1 << 50)
    assert huge_budget == (64 + 96, 256 + 96, 256 + 96)  # at most (64, 256, 256) kept on the CPU


def test_errors_in_plain_words():
    net3d, volume = _net("valid"), _volume()
    with pytest.raises(ValueError, match="a 3D network needs a z-stack"):
        predict_tiled(net3d, volume[0])
    with pytest.raises(ValueError, match="a 3D network needs a z-stack"):
        predict_stack(net3d, volume, axes="TYX")
    with pytest.raises(ValueError, match="Z right before Y, X"):
        predict_stack(net3d, np.stack([volume] * 2, axis=1), axes="ZTYX")
    with pytest.raises(ValueError, match="predict_block takes a 2D network"):
        predict_block(net3d, volume, axes="ZYX", block=((0,), slice(0, 8), slice(0, 8)))
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        predict_tiled(net3d, volume, tile_shape=(64, 64))
    with pytest.raises(ValueError, match="too small along Z"):
        predict_tiled(_net("same"), volume, tile_shape=(8, 64, 64))
    net2d = UNet(depth=2, base_channels=4)
    with pytest.raises(ValueError, match="needs a 3D network"):
        _run(iter_predict_volume(net2d, volume))
    with pytest.raises(ValueError, match="expected \\(C, Y, X\\)"):  # a 2D net keeps its own message
        predict_tiled(net2d, volume)
    bad = volume.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        predict_tiled(net3d, bad)


def test_progress_is_monotone_and_ends_at_the_total():
    net = _net("valid", xy_only_pools=1)
    _, steps = _run(iter_predict_volume(net, _volume(), tile_shape=_tile_keeping(net, (4, 8, 8)), **FP32))
    totals = {total for _, total in steps}
    dones = [done for done, _ in steps]
    assert len(totals) == 1 and dones[0] == 0 and dones[-1] == totals.pop()
    assert all(a <= b for a, b in zip(dones, dones[1:])) and len(steps) > 3


def test_a_stack_of_another_voxel_size_is_predicted_on_the_models_grid():
    from napari_unet.common.pixel_size import resample_image, resample_probabilities
    from napari_unet.predict.volume import iter_predict_volumes

    net = _net("same")
    net.metadata = {"voxel_size": [2.0, 0.5, 0.5], "pixel_size": [0.5, 0.5]}
    volume = _volume((22, 30, 26))
    plain = predict_tiled(net, volume, **FP32)
    assert np.array_equal(predict_tiled(net, volume, pixel_size=(2.05, 0.49, 0.5), **FP32), plain)  # within 5 %
    # half the model's voxel along each axis: the stack resampled to the model's grid, predicted, brought back
    finer = predict_tiled(net, volume, pixel_size=(1.0, 0.25, 0.25), **FP32)
    lows, highs = normalization_range(net, volume, axes="ZYX") or (None, None)
    small = resample_image(volume, "ZYX", (0.5, 0.5, 0.5))
    expected = resample_probabilities(predict_tiled(net, small, normalize=(lows, highs) if lows is not None
                                                    else True, **FP32), volume.shape)
    assert finer.shape == (2, *volume.shape)
    assert np.abs(finer - expected).max() < 1e-5 and np.abs(finer - plain).max() > 1e-3
    # some planes only: those of the whole stack's prediction, from the resampled planes around them
    for planes in ((0, 1), (7, 12), (21, 22)):
        options = PredictOptions(pixel_size=(1.0, 0.25, 0.25), planes=planes, **FP32)
        part, _ = _run(iter_predict_volumes(net, volume, options, axes="ZYX"))
        assert np.abs(part - finer[:, planes[0]:planes[1]]).max() < 1e-5
    # a (y, x) pair leaves Z as it is; a voxel far from the model's is refused, not guessed
    pair = predict_tiled(net, volume, pixel_size=(0.25, 0.25), **FP32)
    expected = resample_probabilities(predict_tiled(net, resample_image(volume, "ZYX", (0.5, 0.5)), **FP32),
                                      volume.shape[1:])
    assert np.abs(pair - expected).max() < 1e-5
    with pytest.raises(ValueError, match="voxel size .* x the model's"):
        predict_tiled(net, volume, pixel_size=(64.0, 0.5, 0.5), **FP32)


def _peak_bytes(work) -> int:
    """The most bytes the CPU allocator held at once during ``work()`` (allocation trace)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        work()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


@pytest.mark.parametrize("dims, xy_only_pools", [(3, 0), (3, 2), (2, 0)])
def test_a_forward_pass_stays_within_the_bytes_the_tile_plans_budget(dims, xy_only_pools):
    """The tile planner sizes tiles by ``bytes_per_pixel``: a forward pass in inference (as
    prediction prepares the network) must not hold more. Holding every skip connection until the
    end, as the forward once did, needs a third more than the 3D budget."""
    from napari_unet.config import model_preset
    from napari_unet.predict.engine import prepare_model

    torch.manual_seed(0)
    config = model_preset("fast3d", xy_only_pools=xy_only_pools) if dims == 3 else model_preset("fast")
    net = prepare_model(UNet.from_config(config), torch.device("cpu"))
    shape = (1, 1, 32, 64, 64) if dims == 3 else (1, 1, 256, 256)
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last_3d if dims == 3 else torch.channels_last)
    with torch.inference_mode():
        peak = _peak_bytes(lambda: net(x))
    assert peak <= x.numel() * bytes_per_pixel(net, None)
    assert peak >= x.numel() * bytes_per_pixel(net, None) * (0.8 if dims == 3 else 0.3)  # the bound is not loose


@pytest.mark.parametrize("preset", ["fast3d", "fast"])
def test_a_training_step_stays_within_the_bytes_the_trainer_checks_for(preset):
    """The trainer refuses a tile and batch whose step would not fit (``training_bytes_per_pixel``):
    a forward and backward pass of the preset's network on a batch of its tiles must not hold more."""
    from napari_unet.config import model_preset
    from napari_unet.predict.plan import training_bytes_per_pixel

    torch.manual_seed(0)
    three_d = preset == "fast3d"
    fmt = torch.channels_last_3d if three_d else torch.contiguous_format  # the layouts TrainingStep uses
    net = UNet.from_config(model_preset(preset)).train().to(memory_format=fmt)
    x = torch.randn(*((2, 1, 16, 48, 48) if three_d else (4, 1, 96, 96))).contiguous(memory_format=fmt)
    peak = _peak_bytes(lambda: net(x).float().mean().backward())
    assert x.numel() * training_bytes_per_pixel(net) * 0.5 <= peak <= x.numel() * training_bytes_per_pixel(net)


def test_the_heap_keeps_freed_maps_only_while_its_growth_fits_the_budget(monkeypatch):
    """A heap without mmap (``reuse_freed_memory``) holds more than the maps alive in it: a
    volume's tiles use it only while that growth stays within the budget that sized them, so the
    largest tiles the planner picks go without, and small ones (a slab, a small stack) keep it."""
    from napari_unet.common import memory
    from napari_unet.config import model_preset

    monkeypatch.delenv("NAPARI_UNET_NO_MALLOC_TUNING", raising=False)
    cpu = torch.device("cpu")
    if not memory.keeps_freed_memory(cpu):
        pytest.skip("no glibc here: the heap is never tuned")
    net = UNet.from_config(model_preset("fast3d"))
    budget = memory.memory_budget(cpu)
    per_voxel = bytes_per_pixel(net, None)
    assert not memory.keeps_freed_memory(cpu, budget)  # a tile that fills the budget goes without
    assert memory.keeps_freed_memory(cpu, int(np.prod((40, 80, 80))) * per_voxel)
    assert memory.keeps_freed_memory(cpu, int(budget / memory.HEAP_GROWTH))
    assert not memory.keeps_freed_memory(cpu, int(budget / memory.HEAP_GROWTH) + 1024)
