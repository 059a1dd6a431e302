"""Deprecated: the old path of overlap-tile prediction; import from :mod:`napari_unet` (the public
names) or from the module that defines each name (:mod:`napari_unet.common.devices`,
:mod:`napari_unet.common.progress`, :mod:`napari_unet.predict.plan`,
:mod:`napari_unet.predict.tiling`). Every name still works here, with a :class:`DeprecationWarning`."""

from .common.aliases import deprecated_module

__getattr__, __all__ = deprecated_module(__name__)
