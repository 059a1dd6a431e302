"""Test-time augmentation: which flipped views of each tile prediction averages (``tta``).

The plain numbers and their check live here, without torch, so that the command line and the
widgets can name them cheaply; :mod:`napari_unet.predict.engine` runs the views. Why flipped views
of a tile are exact (seamless, block by block): see there. Why the plugin averages four by
default: ``benchmarks/README.md``, "Flipped views".
"""

from __future__ import annotations

from ..common.checks import check_int

__all__ = ["VIEWS", "PLUGIN_TTA", "check_tta"]

#: the flips (tensor dims of a ``(B, C, Y, X)`` batch) averaged for each ``tta`` setting: 1 = the
#: tile itself, 2 = and its left-right mirror, 4 = every flip along Y and X
VIEWS = {1: ((),), 2: ((), (-1,)), 4: ((), (-1,), (-2,), (-2, -1))}
#: the views the plugin averages by default (Predict and Batch widgets, ``napari-unet predict``, the
#: demo); the functions of the API default to 1, the network's own output (``benchmarks/README.md``)
PLUGIN_TTA = 4


def check_tta(tta) -> int:
    """``tta`` (the number of flipped views averaged) as an int, or a ValueError in plain words."""
    tta = check_int("tta (flipped views averaged)", tta, minimum=1, maximum=4)
    if tta not in VIEWS:
        raise ValueError(f"tta must be 1 (no flipped views), 2 (and the left-right mirror) or 4 (every flip), got {tta}")
    return tta
