"""Test-time augmentation: which flipped views of each tile prediction averages (``tta``).

The plain numbers and their check live here, without torch, so that the command line and the
widgets can name them cheaply; :mod:`napari_unet.predict.engine` runs the views. Why flipped views
of a tile are exact (seamless, block by block): see there. Why the plugin averages flipped views,
and four only where two disagree: ``benchmarks/README.md``, "Flipped views".

``tta="auto"``: every tile is predicted with two views (itself and its left-right mirror); an
image (a plane, a volume) whose two views disagree on average by more than
:data:`AUTO_DISAGREEMENT` is predicted with the other two flips as well, and its four views are
averaged. Where the network is sure, that is the time of two views; where it is unsure, of four.
"""

from __future__ import annotations

from ..common.checks import check_int

__all__ = ["VIEWS", "AUTO", "AUTO_DISAGREEMENT", "PLUGIN_TTA", "check_tta", "describe_tta"]

#: the flips (tensor dims of a ``(B, C, Y, X)`` batch) averaged for each ``tta`` setting: 1 = the
#: tile itself, 2 = and its left-right mirror, 4 = every flip along Y and X
VIEWS = {1: ((),), 2: ((), (-1,)), 4: ((), (-1,), (-2,), (-2, -1))}
#: the ``tta`` of two views everywhere and four on the images whose first two disagree
AUTO = "auto"
#: an image's two first views disagree when the mean over its pixels of half the L1 distance of
#: their class probabilities is above this (0: identical views, 1: opposite certainties); chosen
#: on the quality suite (``benchmarks/README.md``, "Four views only where two disagree")
AUTO_DISAGREEMENT = 0.035
#: the views the plugin averages by default (Predict and Batch widgets, ``napari-unet predict``, the
#: demo); the functions of the API default to 1, the network's own output (``benchmarks/README.md``)
PLUGIN_TTA = AUTO


def check_tta(tta) -> int | str:
    """``tta`` (the number of flipped views averaged, or ``"auto"``) as an int or ``"auto"``, or a
    ValueError in plain words."""
    if isinstance(tta, str) and tta.strip().lower() == AUTO:
        return AUTO
    if isinstance(tta, str):
        raise ValueError(f"tta must be 1, 2, 4 or 'auto' (flipped views averaged), got {tta!r}")
    tta = check_int("tta (flipped views averaged)", tta, minimum=1, maximum=4)
    if tta not in VIEWS:
        raise ValueError("tta must be 1 (no flipped views), 2 (and the left-right mirror), 4 (every flip) or "
                         f"'auto' (two, and four where they disagree), got {tta}")
    return tta


def describe_tta(tta) -> str:
    """``tta`` in words, for messages and tooltips."""
    tta = check_tta(tta)
    if tta == AUTO:
        return "2 views, 4 where they disagree"
    return "no flipped views" if tta == 1 else f"{tta} flipped views"
