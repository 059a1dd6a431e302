"""The U-Net: the paper's geometry, the options, shape arithmetic and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_unet.config import ModelConfig, model_preset
from napari_unet.model.unet import UNet


@pytest.fixture(autouse=True)
def _one_thread():
    """Small forwards gain nothing from two threads; one is immune to OpenMP spin-waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _conv_layers(net: nn.Module) -> int:
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in net.modules())


def test_paper_network_geometry():
    torch.manual_seed(0)
    net = UNet()
    assert _conv_layers(net) == 23
    n_params = sum(p.numel() for p in net.parameters())
    assert abs(n_params - 31.0e6) < 0.05e6, n_params
    assert net.output_shape((572, 572)) == (388, 388)
    assert net.input_shape((388, 388)) == (572, 572)
    assert net.margin() == 92
    # channels 64 -> 1024 and back
    assert net.inc[0].out_channels == 64
    assert net.down[-1][1][0].out_channels == 1024
    assert net.head.in_channels == 64 and net.head.out_channels == 2
    # a forward at the smallest tile that keeps a pooling cell of output agrees with output_shape
    tile = net.input_shape((20, 20))
    with torch.inference_mode():
        y = net(torch.zeros(1, 1, *tile))
    assert tuple(y.shape) == (1, 2, 20, 20)


def test_paper3d_preset_has_the_3d_unets_geometry():
    """Çiçek et al. (2016): 116 x 132 x 132 voxels in, 28 x 44 x 44 out (z, y, x; no Y/X-only
    pooling); 3x3x3 convolutions, three poolings, batch norm, 256 channels at the bottom of the
    synthesis path; 22.4 M parameters against their 19.1 M (their analysis levels double inside)."""
    from napari_unet.model.fit import default_tile_shape

    config = model_preset("paper3d", n_classes=3)
    net = UNet.from_config(config)
    assert net.output_shape((116, 132, 132)) == (28, 44, 44)
    assert default_tile_shape(net) == (116, 132, 132)
    assert sum(isinstance(m, nn.Conv3d) for m in net.modules()) == 15  # 14 of 3x3x3 and the 1x1x1 head
    assert sum(isinstance(m, nn.ConvTranspose3d) for m in net.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm3d) for m in net.modules()) == 14
    assert net.up[0].conv[0].out_channels == 256 and net.head.in_channels == 64
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == config.parameter_count() and abs(n_params - 22.4e6) < 0.05e6, n_params


def test_paper_preset_has_dropout_at_end_of_contracting_path():
    net = UNet.from_config(model_preset("paper"))
    assert isinstance(net.dropout, nn.Dropout) and net.dropout.p == 0.5
    # applied to the bottom features (the end of the contracting path), in train mode only
    small = UNet(depth=2, base_channels=4, dropout=0.5)
    seen = []
    small.dropout.register_forward_hook(lambda m, i, o: seen.append((i[0].clone(), o.clone())))
    x = torch.rand(1, 1, 60, 60) + 1
    small.train()
    small(x)
    small.eval()
    small(x)
    (train_in, train_out), (eval_in, eval_out) = seen
    assert train_in.shape[1] == 4 * 2**2  # the bottom level's channels
    assert torch.equal(eval_in, eval_out)
    dropped = (train_out == 0) & (train_in != 0)
    assert dropped.any() and torch.allclose(train_out[~dropped], 2 * train_in[~dropped])


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("size", [44, 61, 92, 93, 100, 117, 140])
def test_output_shape_matches_forward_or_raises(depth, size):
    net = UNet(depth=depth, base_channels=2)
    x = torch.zeros(1, 1, size, size + 8 * 2**depth)
    try:
        expected = net.output_shape(tuple(x.shape[-2:]))
    except ValueError as err:
        assert str(size) in str(err)
        with pytest.raises(ValueError):
            net(x)
        return
    with torch.inference_mode():
        assert tuple(net(x).shape[-2:]) == expected


def test_invalid_size_error_says_why():
    net = UNet()
    with pytest.raises(ValueError, match="571.*odd"):
        net.output_shape((571, 572))
    with pytest.raises(ValueError, match="too small"):
        net.output_shape((60, 60))
    with pytest.raises(ValueError, match="390.*388"):
        net.input_shape((390, 388))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        net(torch.zeros(1, 572, 572))


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_valid_input_shape_rounds_up_to_the_next_valid_size(padding):
    net = UNet(depth=3, base_channels=2, padding=padding)
    for wanted in range(1, 200, 7):
        got = net.valid_input_shape((wanted, wanted + 1))
        assert got[0] >= wanted and got[1] >= wanted + 1
        net.output_shape(got)  # valid
        for smaller in range(wanted, got[0]):
            with pytest.raises(ValueError):
                net.output_shape((smaller, got[1]))
        assert net.input_shape(net.output_shape(got)) == got


def test_same_padding_keeps_size_and_needs_multiples_of_the_pool_factor():
    net = UNet(depth=3, base_channels=2, padding="same")
    assert net.output_shape((64, 40)) == (64, 40)
    with torch.inference_mode():
        assert tuple(net(torch.zeros(1, 1, 64, 40)).shape) == (1, 2, 64, 40)
    with pytest.raises(ValueError, match="multiple of 8"):
        net.output_shape((60, 64))


def test_channels_classes_batch_norm_and_config_round_trip():
    cfg = ModelConfig(in_channels=3, n_classes=4, depth=2, base_channels=4, batch_norm=True, dropout=0.1)
    net = UNet.from_config(cfg)
    assert net.config == cfg
    assert UNet.from_config(cfg.to_dict()).config == cfg
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net.metadata == {} and net.metadata is not UNet().metadata
    net.eval()
    with torch.inference_mode():
        y = net(torch.rand(2, 3, 60, 60))
    assert tuple(y.shape) == (2, 4, *net.output_shape((60, 60)))
    with pytest.raises(ValueError, match="3 input channel.*got a tensor with 1"):
        net(torch.rand(1, 1, 60, 60))
    with pytest.raises(TypeError):
        UNet.from_config("paper")


def test_channels_last_and_bf16_autocast_forward():
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=8).eval()
    x = torch.rand(1, 1, 92, 92)
    with torch.inference_mode():
        ref = net(x)
        xc = x.contiguous(memory_format=torch.channels_last)
        y = net.to(memory_format=torch.channels_last)(xc)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yb = net(xc)
    assert torch.allclose(ref, y, atol=1e-5)
    assert yb.dtype == torch.bfloat16
    assert torch.allclose(ref, yb.float(), atol=5e-2)
    assert np.isfinite(yb.float().numpy()).all()


def _with_running_statistics(net: UNet, seed: int = 0) -> UNet:
    """``net`` with batch-norm statistics and affine parameters away from their defaults, as
    training leaves them (folding identity statistics would prove nothing)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))
    return net


@pytest.mark.parametrize("dims", [2, 3])
def test_folding_the_batch_norms_keeps_the_function_and_leaves_the_network_alone(dims):
    from napari_unet.model.unet import folded_for_inference

    torch.manual_seed(1)
    net = _with_running_statistics(UNet(depth=2, base_channels=4, padding="same", batch_norm=True, spatial_dims=dims))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = folded_for_inference(net)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)) for m in folded.modules())
    assert not folded.training and net.training  # the caller's network keeps its mode and its layers
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = torch.randn(2, 1, *((8,) * (dims == 3)), 16, 16)
    with torch.no_grad():
        want = net.eval()(x)
        assert torch.allclose(folded(x), want, atol=1e-5, rtol=1e-5)
        assert (want - net.train()(x)).abs().max() > 1e-2  # the statistics above do matter
