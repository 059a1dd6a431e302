"""Deprecated: the old path of training data from sparse annotations; import from :mod:`napari_unet`
(the public names) or from the module that defines each name (:mod:`napari_unet.annotations.planes`,
:mod:`napari_unet.annotations.targets`, :mod:`napari_unet.dataset.sampler`). Every name still works
here, with a :class:`DeprecationWarning`."""

from __future__ import annotations

from .common.aliases import deprecated_aliases

_NAMES = {
    "Targets": "napari_unet.annotations.targets",
    "Batch": "napari_unet.dataset.sampler",
    "make_targets": "napari_unet.annotations.targets",
    "insert_gaps": "napari_unet.annotations.targets",
    "cell_ring": "napari_unet.annotations.targets",
    "cell_borders": "napari_unet.annotations.targets",
    "instances_to_annotations": "napari_unet.annotations.targets",
    "painted_cell_diameter": "napari_unet.annotations.targets",
    "validate_annotations": "napari_unet.annotations.planes",
    "training_slices": "napari_unet.annotations.planes",
    "TileSampler": "napari_unet.dataset.sampler",
}

__all__ = list(_NAMES)

__getattr__ = deprecated_aliases(__name__, _NAMES)
