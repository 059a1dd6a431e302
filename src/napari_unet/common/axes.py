"""Axis strings: one vocabulary (``"TZCYX"``) for files, arrays, stacks and the CLI.

* :func:`default_axes` / :func:`spatial_axes`: axes when nothing names them (with / without C);
* :func:`canonical_axes` / :func:`to_canonical`: tifffile / OME letters onto ``TZCYX``, in that order;
* :func:`check_axes`: a user's axes string for an array, in plain words when it is wrong;
* :func:`channels_last_to_first`: ``...YXC`` -> ``...CYX``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CANONICAL", "default_axes", "spatial_axes", "canonical_axes", "to_canonical", "check_axes",
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


def default_axes(ndim: int) -> str:
    """Axes of an image of ``ndim`` dimensions when nothing names them: YX, ZYX, TZYX, TZCYX."""
    if ndim < 2 or ndim > 5:
        raise ValueError(f"expected an image with 2 to 5 dimensions, got {ndim}")
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}[ndim]


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
