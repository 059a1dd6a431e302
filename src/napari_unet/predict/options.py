"""How a network predicts, as one object: built once where a user's keywords come in, passed down
whole (the prediction functions, the 3D tiling, the half-scale pass)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["PredictOptions"]


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """The options of :func:`napari_unet.predict_tiled` and :func:`napari_unet.predict_stack`
    (see there): ``tile_shape`` (None: the largest that fits), ``batch_size`` (None: what fits),
    ``device`` (None: CUDA, MPS, then the CPU), ``normalize`` (True: the model's normalization on
    this data; False: none; ``(lows, highs)``), ``precision`` ("auto", "fp32", "bf16", "fp16"),
    ``pixel_size`` (µm per pixel of the data, or None), ``tta`` (1, 2 or 4 flipped views, or "auto")
    ``context`` (a 3D network's tiles: "full", the network's whole context, seamless; or
    "preview", a third of it: several times faster, approximate; see :mod:`napari_unet.predict.volume`)
    and ``planes`` (a 3D network: ``(start, stop)``, predict only these planes of each volume, the
    others read as their context; None: all).

    >>> options = PredictOptions(tta=4)
    >>> options.but(normalize=False).tta, options.normalize
    (4, True)
    """

    tile_shape: Sequence[int] | int | None = None
    batch_size: int | None = None
    device: Any = None
    normalize: bool | tuple = True
    precision: str = "auto"
    pixel_size: Any = None
    tta: int | str = 1
    context: str = "full"
    planes: tuple[int, int] | None = None

    def but(self, **changes) -> PredictOptions:
        """These options with ``changes``."""
        return dataclasses.replace(self, **changes)
