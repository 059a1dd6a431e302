"""Deprecated: the old path of overlap-tile prediction; import from :mod:`napari_unet` (the public
names) or from the module that defines each name (:mod:`napari_unet.common.devices`,
:mod:`napari_unet.common.progress`, :mod:`napari_unet.predict.plan`,
:mod:`napari_unet.predict.tiling`). Every name still works here, with a :class:`DeprecationWarning`."""

from __future__ import annotations

from .common.aliases import deprecated_aliases

_NAMES = {
    "predict_tiled": "napari_unet.predict.tiling",
    "predict_stack": "napari_unet.predict.tiling",
    "predict_block": "napari_unet.predict.tiling",
    "iter_predict_tiled": "napari_unet.predict.tiling",
    "iter_predict_stack": "napari_unet.predict.tiling",
    "normalization_range": "napari_unet.predict.tiling",
    "select_device": "napari_unet.common.devices",
    "choose_tile_shape": "napari_unet.predict.plan",
    "resolve_precision": "napari_unet.common.devices",
    "drive": "napari_unet.common.progress",
}

__all__ = list(_NAMES)

__getattr__ = deprecated_aliases(__name__, _NAMES)
