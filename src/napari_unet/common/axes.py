"""Axis strings: one vocabulary (``"TZCYX"``) for files, arrays, stacks and the CLI.

* :func:`guess_axes`: the axes of data when nothing names them, the one rule every entry point
  uses (files, layers, training pairs); :func:`spatial_axes`: those of labels (no C);
* :func:`canonical_axes` / :func:`to_canonical`: tifffile / OME letters onto ``TZCYX``, in that order;
* :func:`check_axes`: a user's axes string for an array, in plain words when it is wrong;
* :func:`channels_last_to_first`: ``...YXC`` -> ``...CYX``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CANONICAL", "guess_axes", "spatial_axes", "canonical_axes", "to_canonical", "check_axes",
           "channels_last_to_first"]

CANONICAL = "TZCYX"


def canonical_axes(axes: str, shape) -> str:
    """Map tifffile / OME axis letters onto ``TZCYX`` (S -> C, I/Q/... -> Z or T)."""
    axes = axes.upper()
    out = []
    for letter in axes:
        if letter == "S":
            letter = "C" if "C" not in axes and "C" not in out else "Q"
        out.append(letter)
    # leftover letters (I: image sequence, Q: unknown, R, E, ...) become Z, then T, if free
    for i, letter in enumerate(out):
        if letter not in CANONICAL or letter in out[:i]:
            for candidate in "ZT":
                if candidate not in out:
                    out[i] = candidate
                    break
            else:
                raise ValueError(f"cannot map axes {axes!r} of an image of shape {tuple(shape)} onto {CANONICAL!r}")
    return "".join(out)


def to_canonical(data, axes: str):
    axes = canonical_axes(axes, data.shape)
    # drop singleton non-spatial axes that tifffile adds (e.g. S=1)
    order = sorted(range(len(axes)), key=lambda i: CANONICAL.index(axes[i]))
    new_axes = "".join(axes[i] for i in order)
    if order != list(range(len(axes))):
        data = np.transpose(np.asarray(data), order)
    return data, new_axes


def guess_axes(shape, *, labels_shape=None, channels: int | None = None, channels_last: bool = False) -> str:
    """The axes of data of ``shape`` that nothing names: Y, X last, up to two axes before them
    (Z nearest, then T), and a channel axis only where something shows one: ``channels_last``
    (an RGB layer), ``channels`` (a model's channel count above 1, in the axis before Y, X), or
    ``labels_shape`` (the one axis the annotations lack; the smallest when several could be).
    With none of these given, five axes are read as ``TZCYX`` (a hyperstack's order).

    >>> guess_axes((5, 64, 64)), guess_axes((64, 64, 3), channels_last=True)
    ('ZYX', 'YXC')
    >>> guess_axes((5, 2, 64, 64), channels=2), guess_axes((5, 2, 64, 64), labels_shape=(5, 64, 64))
    ('ZCYX', 'ZCYX')
    >>> guess_axes((2, 3, 4, 64, 64))
    'TZCYX'
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"an image needs at least 2 axes (Y, X), got shape {shape}")
    if labels_shape is not None:
        return _with_labels(shape, tuple(int(s) for s in labels_shape))
    if channels_last:
        return spatial_axes(ndim - 1) + "C"
    if channels is not None and channels > 1 and ndim >= 3 and shape[-3] == channels:
        return spatial_axes(ndim - 3 + 2)[:-2] + "CYX"
    if ndim == 5 and channels is None:
        return "TZCYX"
    return spatial_axes(ndim)


def _with_labels(shape: tuple, labels_shape: tuple) -> str:
    if shape == labels_shape:
        return spatial_axes(len(shape))
    if len(shape) == len(labels_shape) + 1:
        candidates = [i for i in range(len(shape)) if shape[:i] + shape[i + 1:] == labels_shape]
        candidates = [i for i in candidates if i < len(shape) - 2 or i == len(shape) - 1]
        if candidates:
            channel = min(candidates, key=lambda i: (shape[i], i))
            rest = spatial_axes(len(labels_shape))
            return rest[:channel] + "C" + rest[channel:]
    raise ValueError(f"labels shape {labels_shape} does not match image shape {shape}")


def spatial_axes(ndim: int) -> str:
    """Axes of annotations (no channel axis) of ``ndim`` dimensions: YX, ZYX, TZYX."""
    if ndim > 4:
        raise ValueError(f"cannot guess axes for {ndim} dimensions: pass axes, e.g. 'TZYX'")
    return "TZ"[4 - ndim:] + "YX"


def check_axes(axes, shape, name: str = "data") -> str:
    """``axes`` (upper case) if it names every axis of ``shape`` once with letters of ``TZCYX``
    and ends with Y, X (a channel axis C may come anywhere); else a TypeError / ValueError."""
    if not isinstance(axes, str):
        raise TypeError(f'axes must be a string such as "ZYX" or "TZCYX", got {axes!r}')
    axes = axes.upper()
    shape = tuple(int(s) for s in shape)
    if len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} name {len(axes)} axes but {name} has {len(shape)}: shape {shape}")
    if set(axes) - set(CANONICAL) or len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} must use each of the letters {CANONICAL!r} at most once")
    if [ax for ax in axes if ax != "C"][-2:] != ["Y", "X"]:
        raise ValueError(f"axes {axes!r} must end with Y, X (a channel axis C may come anywhere), e.g. 'ZYX' or 'YXC'")
    return axes


def channels_last_to_first(data, axes: str):
    """Move a trailing ``C`` axis in front of ``YX``: ``("...YXC")`` -> ``("...CYX")``."""
    if axes.endswith("YXC"):
        return np.moveaxis(np.asarray(data), -1, -3), axes[:-3] + "CYX"
    return data, axes
