"""Deprecated: the old path of training data from sparse annotations; import from :mod:`napari_unet`
(the public names) or from the module that defines each name (:mod:`napari_unet.annotations.planes`,
:mod:`napari_unet.annotations.targets`, :mod:`napari_unet.dataset.sampler`). Every name still works
here, with a :class:`DeprecationWarning`."""

from .common.aliases import deprecated_module

__getattr__, __all__ = deprecated_module(__name__)
