import dataclasses

import numpy as np
import pytest
import torch

from napari_unet.config import AugmentConfig
from napari_unet.dataset.augment import augment_batch, elastic_deform, geometric_margin

GEOMETRY_ONLY = AugmentConfig(gamma_range=(1.0, 1.0), contrast_range=(1.0, 1.0), brightness=0.0, noise_std=0.0)


def _coordinates(batch, h, w):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    image = torch.stack([yy, xx])[None].repeat(batch, 1, 1, 1)
    index = (yy * w + xx)[None].repeat(batch, 1, 1)
    return image, index


@pytest.mark.parametrize(
    "config",
    [
        GEOMETRY_ONLY,
        dataclasses.replace(GEOMETRY_ONLY, rotation_degrees=40.0, shift_pixels=15.0, scale_range=(0.7, 1.4)),
        dataclasses.replace(GEOMETRY_ONLY, elastic_sigma=20.0, elastic_grid=5),
    ],
)
def test_image_target_and_weights_stay_aligned(config):
    """Deform an image of its own coordinates: target / weights read the pixel the image reads."""
    h, w = 70, 90
    image, index = _coordinates(6, h, w)
    generator = torch.Generator().manual_seed(3)
    out_image, out_target, out_weights = augment_batch(
        image, index.long(), index.clone(), config, generator, out_shape=(50, 64), target_shape=(24, 30)
    )
    assert out_image.shape == (6, 2, 50, 64) and out_target.shape == out_weights.shape == (6, 24, 30)
    assert out_target.dtype == torch.int64 and out_weights.dtype == torch.float32
    crop = out_image[:, :, 13:37, 17:47]  # the target region inside the image output
    src_y, src_x = (out_target // w).float(), (out_target % w).float()
    inside = (crop[:, 0] > 0.5) & (crop[:, 0] < h - 1.5) & (crop[:, 1] > 0.5) & (crop[:, 1] < w - 1.5)
    assert inside.float().mean() > 0.5
    # bilinear reads the coordinate itself; nearest reads the pixel within half a pixel of it
    assert (crop[:, 0] - src_y)[inside].abs().max() <= 0.5 + 1e-3
    assert (crop[:, 1] - src_x)[inside].abs().max() <= 0.5 + 1e-3
    assert torch.equal(out_weights, out_target.float())
    # and something did move
    assert not torch.equal(out_target[0], out_target[1])


def test_flips_and_right_angle_rotations_are_exact():
    config = AugmentConfig(
        elastic=False, rotation_degrees=0.0, scale_range=(1.0, 1.0), shift_pixels=0.0,
        gamma_range=(1.0, 1.0), contrast_range=(1.0, 1.0), brightness=0.0, noise_std=0.0,
    )
    x = torch.rand(16, 1, 12, 12)
    target = (x[:, 0] > 0.5).long()
    out, out_target, _ = augment_batch(x, target, None, config, torch.Generator().manual_seed(0))
    seen = set()
    for b in range(16):
        variants = []
        for k in range(4):
            for flip in (False, True):
                v = torch.rot90(x[b, 0], k, dims=(0, 1))
                variants.append(torch.flip(v, dims=(1,)) if flip else v)
        match = [i for i, v in enumerate(variants) if torch.allclose(out[b, 0], v, atol=1e-5)]
        assert match, "output must be one of the 8 rotations / flips of the input"
        seen.add(match[0])
        assert torch.equal(out_target[b], (out[b, 0] > 0.5).long())
    assert len(seen) > 3


def test_seeded_reproducible_and_gray_values_only_touch_the_image():
    image = torch.rand(3, 2, 40, 40)
    target = torch.randint(0, 3, (3, 40, 40))
    weights = torch.rand(3, 40, 40)
    config = AugmentConfig()
    a = augment_batch(image, target, weights, config, torch.Generator().manual_seed(7))
    b = augment_batch(image, target, weights, config, torch.Generator().manual_seed(7))
    c = augment_batch(image, target, weights, config, torch.Generator().manual_seed(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])
    # nearest sampling: target / weight values come from the input
    assert set(a[1].unique().tolist()) <= {0, 1, 2}
    assert torch.isin(a[2], weights).all()
    # gray values change the image beyond the geometry
    geo = augment_batch(image, target, weights, GEOMETRY_ONLY, torch.Generator().manual_seed(7))
    assert torch.equal(geo[1], a[1]) and torch.equal(geo[2], a[2])
    assert not torch.allclose(geo[0], a[0])


def test_disabled_is_a_centre_crop():
    image = torch.rand(2, 1, 30, 30)
    target = torch.randint(0, 2, (2, 30, 30))
    out = augment_batch(image, target, None, AugmentConfig(enabled=False), None, out_shape=(20, 20), target_shape=(10, 10))
    assert torch.equal(out[0], image[:, :, 5:25, 5:25])
    assert torch.equal(out[1], target[:, 10:20, 10:20])
    assert out[2] is None


def test_shape_errors():
    with pytest.raises(ValueError, match="B, C, H, W"):
        augment_batch(torch.rand(1, 10, 10), None, None, AugmentConfig(), None)
    with pytest.raises(ValueError, match="target"):
        augment_batch(torch.rand(1, 1, 10, 10), torch.zeros(1, 9, 10).long(), None, AugmentConfig(), None)
    with pytest.raises(ValueError, match="fit"):
        augment_batch(torch.rand(1, 1, 10, 10), None, None, AugmentConfig(), None, out_shape=(8, 8), target_shape=(9, 9))


def test_margin_covers_the_transform():
    config = AugmentConfig()
    margin = geometric_margin(config, (100, 100))
    # the farthest source pixel: a corner of the tile rotated by 10 degrees and scaled by the
    # largest factor, plus 3 sigma of elastic displacement (scaled too) and the largest shift
    low, high = config.scale_range
    theta = np.radians(config.rotation_degrees)
    reach = 50 * high * (np.cos(theta) + np.sin(theta)) - 50 + 3 * config.elastic_sigma * high + config.shift_pixels
    assert reach <= margin <= reach + 2
    small = geometric_margin(AugmentConfig(scale_range=(1.0, 1.0), elastic=False, rotation_degrees=0.0,
                                           shift_pixels=0.0), (100, 100))
    assert small <= 1
    assert geometric_margin(None, (100, 100)) == 0
    assert geometric_margin(AugmentConfig(enabled=False), (100, 100)) == 0


def test_elastic_deform_numpy():
    rng = np.random.default_rng(0)
    image = rng.random((2, 48, 56)).astype(np.float32)
    labels = rng.integers(0, 5, (48, 56)).astype(np.uint16)
    mask = labels > 2
    out, out_labels, out_mask = elastic_deform(image, labels, mask, sigma=6, seed=4)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out_labels.dtype == np.uint16 and out_mask.dtype == bool
    assert set(np.unique(out_labels)) <= set(np.unique(labels))
    np.testing.assert_array_equal(out_mask, out_labels > 2)  # same field, nearest
    again = elastic_deform(image, labels, mask, sigma=6, seed=4)
    np.testing.assert_array_equal(again[0], out)
    assert not np.allclose(out, image)
    # without displacement it is the identity
    np.testing.assert_allclose(elastic_deform(image, sigma=0.0, seed=1), image, atol=1e-5)


def test_elastic_deform_keeps_coordinates_aligned():
    h, w = 40, 50
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    index = (yy * w + xx).astype(np.int64)
    coords, moved = elastic_deform(np.stack([yy, xx]), index, sigma=8, seed=2)
    assert coords.dtype == np.float64
    inside = (coords[0] > 0.5) & (coords[0] < h - 1.5) & (coords[1] > 0.5) & (coords[1] < w - 1.5)
    assert np.abs(coords[0] - moved // w)[inside].max() <= 0.5 + 1e-6
    assert np.abs(coords[1] - moved % w)[inside].max() <= 0.5 + 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_geometry():
    image, index = _coordinates(2, 30, 30)
    cpu = augment_batch(image, index.long(), None, GEOMETRY_ONLY, torch.Generator().manual_seed(1))
    gpu = augment_batch(image.cuda(), index.long().cuda(), None, GEOMETRY_ONLY, torch.Generator().manual_seed(1))
    assert torch.allclose(cpu[0], gpu[0].cpu(), atol=1e-3)


def test_augment_config_round_trip_and_validation():
    config = AugmentConfig(scale_range=(0.8, 1.3), elastic_grid=4)
    assert AugmentConfig.from_dict(config.to_dict()) == config
    for bad in (dict(scale_range=(1.2, 0.9)), dict(gamma_range=(0.0, 1.0)), dict(elastic_grid=1), dict(noise_std=-0.1)):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)
