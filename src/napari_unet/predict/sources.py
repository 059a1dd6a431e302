"""The image a prediction reads: a stack seen as planes of (C, Y, X), windows read lazily from
numpy, memmap, zarr or dask (the input is never loaded whole)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common.axes import check_axes
from ..common.checks import as_real_array, check_finite_image
from ..model.fit import check_channels
from ..model.normalization import normalization_params

__all__ = ["Source", "as_image_array", "make_source", "source_normalization"]


@dataclass(frozen=True)
class Source:
    """A stack seen as planes of (C, Y, X); reads windows lazily from numpy / zarr / dask."""

    data: Any
    axes: str
    plane_shape: tuple[int, ...]
    n_channels: int
    height: int
    width: int

    def read(self, plane: tuple[int, ...], ys: slice, xs: slice) -> np.ndarray:
        key: list[Any] = []
        it = iter(plane)
        for ax in self.axes:
            if ax == "Y":
                key.append(ys)
            elif ax == "X":
                key.append(xs)
            elif ax == "C":
                key.append(slice(None))
            else:
                key.append(next(it))
        block = np.asarray(self.data[tuple(key)])
        kept = [ax for ax in self.axes if ax in "CYX"]
        if "C" not in kept:
            return block[None]
        return block.transpose(kept.index("C"), kept.index("Y"), kept.index("X"))


def as_image_array(data, name: str):
    """``data`` as a real-valued array of finite numbers (a clear error otherwise)."""
    data = as_real_array(data, name)
    check_finite_image(data, name)
    return data


def make_source(data, axes: str, model, name: str) -> Source:
    """The stack ``data`` with axes ``axes`` as planes for ``model`` (its channels checked)."""
    shape = tuple(int(s) for s in data.shape)
    axes = check_axes(axes, shape, name)
    n_channels = check_channels(model, shape, axes, name)
    plane_shape = tuple(shape[i] for i, ax in enumerate(axes) if ax not in "CYX")
    return Source(data, axes, plane_shape, n_channels, shape[axes.index("Y")], shape[axes.index("X")])


def source_normalization(model, source: Source, normalize):
    """The ``(lows, highs)`` intensities ``source`` is normalized with (``(None, None)``: none):
    ``normalize=True`` the percentiles of the whole source as ``model.metadata["normalization"]``
    asks, False none, or a ``(lows, highs)`` pair given, checked (one value per channel)."""
    if isinstance(normalize, (tuple, list)):  # (lows, highs) given, e.g. those of a whole stack
        if len(normalize) != 2:
            raise ValueError(f"normalize must be True, False or a (lows, highs) pair, got {normalize!r}")
        n_channels = source.data.shape[source.axes.index("C")] if "C" in source.axes else 1
        lows, highs = (np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel() for v in normalize)
        if lows.shape != (n_channels,) or highs.shape != (n_channels,):
            raise ValueError(f"normalize=(lows, highs) needs {n_channels} value(s) each (one per channel), "
                             f"got {lows.size} and {highs.size}")
        if not (np.all(np.isfinite(lows)) and np.all(np.isfinite(highs))):
            raise ValueError("normalize=(lows, highs) must be finite numbers")
        return lows, highs
    norm = model.metadata.get("normalization") if isinstance(getattr(model, "metadata", None), dict) else None
    if not normalize or not isinstance(norm, dict):
        return None, None
    channel_axis = source.axes.index("C") if "C" in source.axes else None
    return normalization_params(source.data, norm, channel_axis=channel_axis)
