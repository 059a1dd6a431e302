import numpy as np
import pytest

from napari_unet.model.normalization import apply_normalization, normalization_params, percentile_normalize


def test_percentiles_map_to_zero_and_one():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 10, (64, 64)).astype(np.float32)
    y = percentile_normalize(x, 1, 99)
    assert y.dtype == np.float32
    assert abs(np.percentile(y, 1)) < 1e-4 and abs(np.percentile(y, 99) - 1) < 1e-4


def test_channels_are_normalized_separately():
    x = np.stack([np.linspace(0, 1, 100), np.linspace(0, 1000, 100)]).astype(np.float32)
    y = percentile_normalize(x, 0, 100, channel_axis=0)
    np.testing.assert_allclose(y[0], y[1], atol=1e-6)


def test_tilewise_application_equals_whole_image():
    x = np.random.default_rng(1).integers(0, 4000, (50, 70)).astype(np.uint16)
    lows, highs = normalization_params(x)
    whole = apply_normalization(x, lows, highs)
    tile = apply_normalization(x[10:30, 5:40], lows, highs)
    np.testing.assert_array_equal(whole[10:30, 5:40], tile)


def test_large_images_use_a_subsample_close_to_the_exact_percentile():
    x = np.random.default_rng(2).random((3000, 3000), dtype=np.float32)
    lows, highs = normalization_params(x)
    assert abs(lows[0] - 0.01) < 0.002 and abs(highs[0] - 0.998) < 0.002


def test_flat_image_and_bad_arguments():
    y = percentile_normalize(np.full((5, 5), 7.0))
    assert np.all(y == 0)
    with pytest.raises(ValueError, match="percentiles"):
        normalization_params(np.zeros((4, 4)), {"kind": "percentile", "low": 50, "high": 10})
    with pytest.raises(ValueError, match="kind"):
        normalization_params(np.zeros((4, 4)), {"kind": "zscore"})
    lows, highs = normalization_params(np.zeros((4, 4)), {"kind": "none"})
    assert lows is None and highs is None
