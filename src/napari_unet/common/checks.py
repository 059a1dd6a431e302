"""Argument checks shared by every entry point (config dataclasses, prediction, labels, files, CLI).

One rule lives in one place: each function checks one kind of value and raises a
:class:`TypeError` (wrong kind) or :class:`ValueError` (wrong value) whose message names the
argument, the value given and what is allowed. The functions return the value in its canonical
form (``int``, ``float``, a ``(Y, X)`` tuple, a numpy-compatible array) so callers use what was
checked.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

__all__ = [
    "check_int",
    "check_float",
    "check_pair",
    "check_choice",
    "as_real_array",
    "check_finite_image",
    "check_integer_labels",
]


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within ``[minimum, maximum]``; bools, strings and fractions are refused."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float, np.floating)):
        raise TypeError(f"{name} must be a whole number, got {_shown(value)} ({type(value).__name__})")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be a whole number, got {value}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                above: float | None = None, below: float | None = None) -> float:
    """``value`` as a finite float; ``minimum``/``maximum`` are inclusive, ``above``/``below`` strict."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {_shown(value)} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    for bound, ok, word in ((minimum, lambda b: value >= b, ">="), (maximum, lambda b: value <= b, "<="),
                            (above, lambda b: value > b, ">"), (below, lambda b: value < b, "<")):
        if bound is not None and not ok(bound):
            raise ValueError(f"{name} must be {word} {bound}, got {value}")
    return value


def check_pair(name: str, value, *, minimum: int = 1, maximum: int | None = None) -> tuple[int, int]:
    """An int ``n`` (meaning ``(n, n)``) or a ``(Y, X)`` pair of ints, each within the bounds."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a (Y, X) pair of ints, got the string {_shown(value)}")
    if isinstance(value, (numbers.Integral, float, np.floating)) and not isinstance(value, bool):
        value = (value, value)
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a (Y, X) pair of ints, got {_shown(value)}") from None
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a (Y, X) pair of ints, got {len(items)} values {_shown(value)}")
    return tuple(check_int(f"{name}[{i}]", v, minimum=minimum, maximum=maximum) for i, v in enumerate(items))  # type: ignore[return-value]


def check_choice(name: str, value, choices: Sequence[Any]):
    """``value`` if it is one of ``choices``."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {_shown(value)}")
    return value


def as_real_array(data, name: str):
    """``data`` as an array of real numbers (numpy, memmap, zarr and dask arrays stay as they are).

    A torch tensor becomes a numpy array; a ragged list, complex numbers, strings, objects and
    empty arrays are refused with a message naming ``name``.
    """
    if type(data).__module__.startswith("torch") and hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    if not (hasattr(data, "shape") and hasattr(data, "__getitem__") and hasattr(data, "dtype")):
        try:
            data = np.asarray(data)
        except ValueError as exc:
            raise ValueError(f"{name} must be a rectangular array; nested lists of different lengths "
                             f"cannot be one ({exc})") from None
    try:
        kind = np.dtype(data.dtype).kind
    except TypeError:
        kind = "O"
    if kind == "c":
        raise TypeError(f"{name} holds complex numbers (dtype {data.dtype}); take the magnitude "
                        "(np.abs) or the real part first")
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int, uint or float), got dtype {data.dtype}")
    if len(data.shape) == 0 or any(int(s) == 0 for s in data.shape):
        raise ValueError(f"{name} is empty: shape {tuple(data.shape)}")
    return data


def check_finite_image(data, name: str) -> None:
    """Refuse an in-memory float image holding NaN or infinity (lazy arrays are checked by the reader).

    >>> check_finite_image(np.array([1.0, np.nan, np.inf]), "image 0")
    Traceback (most recent call last):
    ...
    ValueError: image 0 holds 2 NaN or infinite value(s) of 3; replace them first (e.g. np.nan_to_num)
    """
    if isinstance(data, np.ndarray) and data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            bad = int(data.size - np.count_nonzero(finite))
            raise ValueError(f"{name} holds {bad} NaN or infinite value(s) of {data.size}; "
                             "replace them first (e.g. np.nan_to_num)")


def check_integer_labels(annotations, name: str = "annotations") -> np.ndarray:
    """``annotations`` as an integer label array (TypeError for float or bool labels)."""
    ann = np.asarray(annotations)
    if ann.dtype == bool or not np.issubdtype(ann.dtype, np.integer):
        raise TypeError(
            f"{name} must be an integer label image (0 = not annotated, 1 = background, 2, 3, ... = cells "
            f"or classes), got dtype {ann.dtype}"
        )
    return ann
