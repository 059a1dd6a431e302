"""Deprecated: the old path of model files and image files; import from :mod:`napari_unet` (the public
names) or from the module that defines each name (:mod:`napari_unet.files.images`,
:mod:`napari_unet.files.safe_write`, :mod:`napari_unet.model.files`). Every name still works here,
with a :class:`DeprecationWarning`."""

from .common.aliases import deprecated_module

__getattr__, __all__ = deprecated_module(__name__)
