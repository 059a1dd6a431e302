import dataclasses
import math

import pytest
import torch

from napari_unet.config import AugmentConfig
from napari_unet.dataset.augment import gray_values
from napari_unet.dataset.augment_volume import augment_volume_batch, volume_margin

GEOMETRY_ONLY = AugmentConfig(gamma_range=(1.0, 1.0), contrast_range=(1.0, 1.0), brightness=0.0, noise_std=0.0)
NOTHING = dataclasses.replace(GEOMETRY_ONLY, elastic=False, rotate90=False, flip=False, rotation_degrees=0.0,
                              scale_range=(1.0, 1.0), shift_pixels=0.0)


def _coordinates(batch, d, h, w):
    """Image whose channels are the voxel's own (z, y, x), and a unique id per voxel."""
    zz, yy, xx = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in (d, h, w)), indexing="ij")
    image = torch.stack([zz, yy, xx])[None].repeat(batch, 1, 1, 1, 1)
    index = ((zz * h + yy) * w + xx).long()[None].repeat(batch, 1, 1, 1)
    return image, index


def _weight_of(index, h, w):
    """Weight as a function of the voxel: 0 (unpainted) on odd slices, 1 + id % 5 on painted ones."""
    z = index // (h * w)
    return torch.where(z % 2 == 1, 0.0, 1.0 + (index % 5).float())


@pytest.mark.parametrize(
    "config, spacing",
    [
        (GEOMETRY_ONLY, None),
        (dataclasses.replace(GEOMETRY_ONLY, rotation_degrees=40.0, shift_pixels=6.0, scale_range=(0.7, 1.4)), (3.0, 1.0, 1.0)),
        (dataclasses.replace(GEOMETRY_ONLY, elastic_sigma=4.0, elastic_grid=4), (2.0, 0.5, 0.5)),
    ],
)
def test_image_target_and_weights_stay_aligned(config, spacing):
    """Deform a volume of its own coordinates: target / weights read the voxel the image reads,
    and a weight always comes with the target of its own source voxel (painted slices only)."""
    d, h, w = 20, 40, 40
    image, index = _coordinates(4, d, h, w)
    weights = _weight_of(index, h, w)
    out_image, out_target, out_weights = augment_volume_batch(
        image, index, weights, config, torch.Generator().manual_seed(3), spacing=spacing,
        out_shape=(14, 30, 30), target_shape=(8, 20, 20))
    assert out_image.shape == (4, 3, 14, 30, 30) and out_target.shape == out_weights.shape == (4, 8, 20, 20)
    assert out_target.dtype == torch.int64 and out_weights.dtype == torch.float32
    assert torch.isin(out_target, index).all()
    assert torch.equal(out_weights, _weight_of(out_target, h, w))  # never a weight from an unpainted voxel
    assert (out_weights == 0).any() and (out_weights > 0).any()
    crop = out_image[:, :, 3:11, 5:25, 5:25]  # the target region inside the image output
    source = torch.stack([out_target // (h * w), out_target // w % h, out_target % w], 1).float()
    inside = torch.ones_like(out_weights, dtype=torch.bool)
    for axis, n in enumerate((d, h, w)):
        inside &= (crop[:, axis] > 0.5) & (crop[:, axis] < n - 1.5)
    assert inside.float().mean() > 0.5
    # trilinear reads the coordinate itself; nearest reads the voxel within half a voxel of it
    assert (crop - source).abs().amax(1)[inside].max() <= 0.5 + 1e-3
    assert not torch.equal(out_target[0], out_target[1])  # and something did move


def test_seeded_reproducible_and_gray_values_only_touch_the_image():
    image = torch.rand(2, 2, 10, 24, 24)
    target = torch.randint(0, 3, (2, 10, 24, 24))
    weights = torch.rand(2, 10, 24, 24)
    args = dict(spacing=(2.0, 1.0, 1.0), out_shape=(8, 20, 20))
    a = augment_volume_batch(image, target, weights, AugmentConfig(), torch.Generator().manual_seed(7), **args)
    b = augment_volume_batch(image, target, weights, AugmentConfig(), torch.Generator().manual_seed(7), **args)
    c = augment_volume_batch(image, target, weights, AugmentConfig(), torch.Generator().manual_seed(8), **args)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.allclose(a[0], c[0]) and not torch.equal(a[1], c[1])
    assert set(a[1].unique().tolist()) <= {0, 1, 2} and torch.isin(a[2], weights).all()
    geo = augment_volume_batch(image, target, weights, GEOMETRY_ONLY, torch.Generator().manual_seed(7), **args)
    assert torch.equal(geo[1], a[1]) and torch.equal(geo[2], a[2])
    assert not torch.allclose(geo[0], a[0])


def test_disabled_is_a_centre_crop():
    image = torch.rand(2, 1, 12, 30, 30)
    target = torch.randint(0, 2, (2, 12, 30, 30))
    weights = torch.rand(2, 12, 30, 30)
    out = augment_volume_batch(image, target, weights, AugmentConfig(enabled=False), None,
                               out_shape=(8, 20, 22), target_shape=(4, 10, 10))
    assert torch.equal(out[0], image[:, :, 2:10, 5:25, 4:26])
    assert torch.equal(out[1], target[:, 4:8, 10:20, 10:20])
    assert torch.equal(out[2], weights[:, 4:8, 10:20, 10:20])
    # every transform switched off (gray values too): the same crop, also with augmentation enabled
    same = augment_volume_batch(image, target, None, NOTHING, torch.Generator().manual_seed(0), out_shape=(8, 20, 22))
    assert torch.equal(same[0], out[0]) and same[2] is None


def test_flips_are_exact_and_include_z():
    config = dataclasses.replace(NOTHING, flip=True)
    x = torch.rand(16, 1, 6, 8, 10)
    target = (x[:, 0] > 0.5).long()
    out, out_target, _ = augment_volume_batch(x, target, None, config, torch.Generator().manual_seed(0))
    seen = set()
    for b in range(16):
        match = [dims for dims in ((), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3))
                 if torch.allclose(out[b], torch.flip(x[b], dims), atol=1e-6)]
        assert len(match) == 1, "output must be one flip combination of the input"
        seen.add(match[0])
        assert torch.equal(out_target[b], (out[b, 0] > 0.5).long())
    assert any(1 in dims for dims in seen) and any(1 not in dims for dims in seen)  # z flipped, and not
    assert len(seen) > 3


def test_xy_rotation_never_mixes_z_into_y_and_x():
    """A volume constant in Y and X keeps constant slices, its z profile only flipped / scaled; a
    volume constant in Z stays constant in Z."""
    config = dataclasses.replace(NOTHING, rotate90=True, flip=True, rotation_degrees=40.0, scale_range=(0.8, 1.25))
    z = torch.arange(24, dtype=torch.float32)[None, :, None, None].expand(8, 24, 20, 20)
    plane = torch.rand(8, 1, 20, 20).expand(8, 24, 20, 20)
    out, _, _ = augment_volume_batch(torch.stack([z, plane], 1), None, None, config,
                                     torch.Generator().manual_seed(1), spacing=(2.0, 1.0, 1.0), out_shape=(12, 16, 16))
    assert (out[:, 0].amax((-2, -1)) - out[:, 0].amin((-2, -1))).max() < 1e-4  # every output slice constant
    assert (out[:, 1].amax(1) - out[:, 1].amin(1)).max() < 1e-5  # every output column constant
    assert not torch.allclose(out[:, 1, 0], plane[:, 0, 2:18, 2:18], atol=0.1)  # and the plane did turn
    profile = out[:, 0, :, 0, 0]
    slope = profile[:, 1:] - profile[:, :-1]
    assert (slope - slope[:, :1]).abs().max() < 1e-4  # still linear in z
    assert ((slope[:, 0].abs() > 0.8 - 1e-4) & (slope[:, 0].abs() < 1.25 + 1e-4)).all()  # scaled by s ...
    assert ((slope[:, 0].abs() - 1).abs() > 0.05).any()  # ... Z too (the scale is a physical one)
    assert (slope[:, 0] > 0).any() and (slope[:, 0] < 0).any()  # flipped in some samples
    assert (profile.mean(1) - 11.5).abs().max() < 1e-3  # about the centre (no shift asked)


def test_the_shift_has_the_same_physical_length_along_z():
    image, _ = _coordinates(16, 12, 40, 40)
    config = dataclasses.replace(NOTHING, shift_pixels=8.0)
    out, _, _ = augment_volume_batch(image, None, None, config, torch.Generator().manual_seed(0),
                                     spacing=(4.0, 1.0, 1.0), out_shape=(6, 20, 20))
    shift = out[:, :, 0, 0, 0] - torch.tensor([3.0, 10.0, 10.0])  # per sample (z, y, x) voxels
    assert torch.allclose(out - out[:, :, :1, :1, :1], _coordinates(16, 6, 20, 20)[0], atol=1e-4)  # a pure shift
    assert shift[:, 0].abs().max() <= 2.0 + 1e-4 and shift[:, 0].abs().max() > 1.0  # 8 pixels = 2 z-steps
    assert shift[:, 1:].abs().max() <= 8.0 + 1e-4 and shift[:, 1:].abs().max() > 5.0


def _displacement_rms(spacing):
    image, _ = _coordinates(8, 32, 40, 40)
    config = dataclasses.replace(NOTHING, elastic=True, elastic_sigma=2.0, elastic_grid=3)
    out, _, _ = augment_volume_batch(image, None, None, config, torch.Generator().manual_seed(2),
                                     spacing=spacing, out_shape=(16, 24, 24))
    identity, _ = _coordinates(1, 16, 24, 24)
    moved = out - (identity + torch.tensor([8.0, 8.0, 8.0])[:, None, None, None])
    return moved.pow(2).mean((0, 2, 3, 4)).sqrt()  # (z, y, x) in voxels


def test_anisotropic_spacing_gives_the_same_physical_elastic_displacement():
    iso = _displacement_rms(None)
    aniso = _displacement_rms((5.0, 1.0, 1.0))
    assert 0.5 < iso[0] / iso[1:].mean() < 2.0  # cubic voxels: as much in z as in y and x
    assert aniso[0] / aniso[1:].mean() < 0.35  # 5x longer voxels: ~5x fewer voxels in z ...
    assert 0.5 < 5 * aniso[0] / aniso[1:].mean() < 2.0  # ... for the same physical length
    assert torch.allclose(aniso[1:], iso[1:], rtol=0.05)


def test_a_ball_and_its_label_stay_together():
    zz, yy, xx = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in (16, 48, 48)), indexing="ij")
    ball = ((2.0 * (zz - 6)) ** 2 + (yy - 16) ** 2 + (xx - 30) ** 2) < 64  # off centre, spacing (2, 1, 1)
    image = ball.float()[None, None].repeat(6, 1, 1, 1, 1)
    target = ball.long()[None].repeat(6, 1, 1, 1)
    out, out_target, _ = augment_volume_batch(image, target, None, AugmentConfig(), torch.Generator().manual_seed(4),
                                              spacing=(2.0, 1.0, 1.0))
    centres = []
    for b in range(6):
        threshold = 0.5 * (out[b].amin() + out[b].amax())
        found, label = out[b, 0] > threshold, out_target[b] == 1
        assert label.sum() > 100
        assert (found & label).sum() / (found | label).sum() > 0.8
        centres.append(torch.stack([t[label].float().mean() for t in (zz, yy, xx)]))
    assert (torch.stack(centres) - torch.tensor([6.0, 16.0, 30.0])).norm(dim=1).max() > 5  # the ball moved


def test_gray_values_draw_per_sample_parameters_on_volumes():
    config = AugmentConfig(gamma_range=(1.0, 1.0), contrast_range=(0.5, 2.0), brightness=0.5, noise_std=0.0)
    image = torch.rand(4, 2, 5, 6, 7)
    out = gray_values(image.clone(), config, torch.Generator().manual_seed(0))
    for b in range(4):  # one affine change of all channels and voxels of a sample
        x, y = image[b].flatten(), out[b].flatten()
        factor = ((y - y.mean()) * (x - x.mean())).sum() / (x - x.mean()).pow(2).sum()
        assert torch.allclose(y, y.mean() + factor * (x - x.mean()), atol=1e-5)
    assert (out - image).mean((1, 2, 3, 4)).unique().numel() == 4  # a different offset per sample


def test_shape_errors():
    with pytest.raises(ValueError, match="B, C, Z, Y, X"):
        augment_volume_batch(torch.rand(1, 1, 10, 10))
    with pytest.raises(ValueError, match="target"):
        augment_volume_batch(torch.rand(1, 1, 4, 10, 10), torch.zeros(1, 4, 9, 10).long())
    with pytest.raises(ValueError, match="weights"):
        augment_volume_batch(torch.rand(1, 1, 4, 10, 10), None, torch.zeros(1, 10, 10))
    with pytest.raises(ValueError, match="fit"):
        augment_volume_batch(torch.rand(1, 1, 4, 10, 10), out_shape=(4, 8, 8), target_shape=(4, 9, 9))
    with pytest.raises(ValueError, match="out_shape"):
        augment_volume_batch(torch.rand(1, 1, 4, 10, 10), out_shape=(8, 8))
    with pytest.raises(ValueError, match="spacing"):
        augment_volume_batch(torch.rand(1, 1, 4, 10, 10), spacing=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        volume_margin(AugmentConfig(), (4, 10, 10), spacing=(1.0, 1.0))


def _reach(config, tile, margin, spacing):
    """How far beyond the tile (voxels, z y x) the transform reads, from a volume larger than
    tile + twice the margin on each side: no mirroring, the coordinates read are the true sources."""
    big = tuple(t + 4 * m for t, m in zip(tile, margin))
    image, _ = _coordinates(16, *big)
    out, _, _ = augment_volume_batch(image, None, None, config, torch.Generator().manual_seed(5),
                                     spacing=spacing, out_shape=tile)
    offset = out - torch.tensor([(n - 1) / 2 for n in big])[:, None, None, None]
    return offset.abs().amax((0, 2, 3, 4)) - torch.tensor([t / 2 for t in tile])


@pytest.mark.parametrize("spacing", [None, (4.0, 1.0, 1.0)])
def test_margin_covers_what_the_transform_reads(spacing):
    tile = (8, 24, 24)
    config = dataclasses.replace(GEOMETRY_ONLY, elastic_sigma=3.0)
    margin = volume_margin(config, tile, spacing)
    assert volume_margin(config, list(tile), None if spacing is None else list(spacing)) == margin
    assert volume_margin(AugmentConfig(enabled=False), tile) == (0, 0, 0)
    assert (_reach(config, tile, margin, spacing) <= torch.tensor(margin)).all()
    # a fixed zoom out (scale 1.5) reads half a tile more in every axis (the last voxel centre:
    # 1.5 (t - 1) / 2 from the centre); the margin is that, rounded up, plus one
    zoom = dataclasses.replace(NOTHING, scale_range=(1.5, 1.5))
    zoom_margin = volume_margin(zoom, tile, spacing)
    assert torch.allclose(_reach(zoom, tile, zoom_margin, spacing), torch.tensor(tile) / 4 - 0.75, atol=1e-3)
    assert zoom_margin == tuple(math.ceil(t / 4) + 1 for t in tile)
    if spacing is not None:  # a z-step of 4 pixels: a quarter of the z voxels of the same physical tile
        iso = volume_margin(config, (tile[0] * 4, *tile[1:]))
        assert margin[1:] == iso[1:] and abs(margin[0] - iso[0] / 4) <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu_with_a_cpu_generator():
    image, index = _coordinates(2, 8, 24, 24)
    cpu = augment_volume_batch(image, index, None, AugmentConfig(), torch.Generator().manual_seed(0), spacing=(2, 1, 1))
    gpu = augment_volume_batch(image.cuda(), index.cuda(), None, AugmentConfig(), torch.Generator().manual_seed(0),
                               spacing=(2, 1, 1))
    assert gpu[0].is_cuda and torch.allclose(gpu[0].cpu(), cpu[0], atol=1e-3)
    assert (gpu[1].cpu() != cpu[1]).float().mean() < 0.01  # nearest may round a tie differently
