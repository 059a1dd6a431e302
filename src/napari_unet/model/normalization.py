"""Per-image percentile normalization, stored with a model so prediction normalizes alike.

A trained model keeps ``model.metadata["normalization"]``, e.g.
``{"kind": "percentile", "low": 1.0, "high": 99.8}``; :func:`normalization_params` computes the
per-channel percentiles of one image (on a strided subsample for very large or out-of-core
images) and :func:`apply_normalization` maps them to 0 and 1, tile by tile if need be.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["percentile_normalize", "normalization_params", "apply_normalization", "DEFAULT_NORMALIZATION"]

DEFAULT_NORMALIZATION: dict[str, Any] = {"kind": "percentile", "low": 1.0, "high": 99.8}

# at most this many pixels per channel are read to estimate the percentiles
_MAX_SAMPLE = 4_000_000


def _subsample(channel) -> np.ndarray:
    """A strided view of a (possibly lazy) 2D+ array with at most ~_MAX_SAMPLE pixels."""
    shape = channel.shape
    n = int(np.prod(shape)) if len(shape) else 1
    if n <= _MAX_SAMPLE:
        return np.asarray(channel)
    step = int(math.ceil((n / _MAX_SAMPLE) ** (1.0 / len(shape))))
    return np.asarray(channel[tuple(slice(None, None, step) for _ in shape)])


def normalization_params(image, normalization: dict | None = None, *, channel_axis: int | None = None):
    """Per-channel (low, high) intensities of ``image`` for a percentile normalization.

    Parameters
    ----------
    image : array-like
        Any numpy-like array (numpy, memmap, zarr, dask).
    normalization : dict, optional
        ``{"kind": "percentile", "low": 1.0, "high": 99.8}`` (the default) or ``{"kind": "none"}``.
    channel_axis : int, optional
        Axis holding channels; each channel gets its own percentiles.

    Returns
    -------
    lows, highs : np.ndarray
        float64 arrays of one value per channel (one value when ``channel_axis`` is None),
        or ``None, None`` when the normalization kind is ``"none"``.
    """
    norm = dict(DEFAULT_NORMALIZATION if normalization is None else normalization)
    kind = norm.get("kind", "percentile")
    if kind == "none":
        return None, None
    if kind != "percentile":
        raise ValueError(f'normalization kind must be "percentile" or "none", got {kind!r}')
    low, high = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}")
    if channel_axis is None:
        channels = [image]
    else:
        axis = channel_axis % len(image.shape)
        channels = [image[(slice(None),) * axis + (c,)] for c in range(image.shape[axis])]
    lows, highs = [], []
    for channel in channels:
        sample = _subsample(channel).astype(np.float32, copy=False)
        if sample.size == 0:
            raise ValueError("cannot normalize an empty image")
        lo, hi = np.percentile(sample, [low, high])
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError("the image contains NaN or infinite values (its percentiles are not finite); expected "
                             "finite numbers: replace them first, e.g. with np.nan_to_num")
        lows.append(lo)
        highs.append(hi)
    return np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)


def apply_normalization(tile, lows, highs, *, channel_axis: int | None = None) -> np.ndarray:
    """Map ``lows`` to 0 and ``highs`` to 1 (float32); a flat channel maps to 0."""
    x = np.asarray(tile, dtype=np.float32)
    if lows is None:
        return x
    scale = np.where(highs - lows > 1e-12, 1.0 / np.maximum(highs - lows, 1e-12), 0.0)
    shape = [1] * x.ndim
    if channel_axis is not None:
        shape[channel_axis % x.ndim] = -1
    lo = lows.astype(np.float32).reshape(shape) if channel_axis is not None else np.float32(lows[0])
    sc = scale.astype(np.float32).reshape(shape) if channel_axis is not None else np.float32(scale[0])
    return (x - lo) * sc


def percentile_normalize(image, low: float = 1.0, high: float = 99.8, *, channel_axis: int | None = None) -> np.ndarray:
    """Normalize ``image`` so that its ``low`` and ``high`` percentiles become 0 and 1.

    Examples
    --------
    >>> import numpy as np
    >>> x = percentile_normalize(np.arange(1001.0), 0, 100)
    >>> float(x.min()), float(x.max())
    (0.0, 1.0)
    """
    norm = {"kind": "percentile", "low": low, "high": high}
    lows, highs = normalization_params(image, norm, channel_axis=channel_axis)
    return apply_normalization(image, lows, highs, channel_axis=channel_axis)
