"""Deprecated: the old path of model files and image files; import from :mod:`napari_unet` (the public
names) or from the module that defines each name (:mod:`napari_unet.files.images`,
:mod:`napari_unet.files.safe_write`, :mod:`napari_unet.model.files`). Every name still works here,
with a :class:`DeprecationWarning`."""

from __future__ import annotations

from .common.aliases import deprecated_aliases

_NAMES = {
    "save_model": "napari_unet.model.files",
    "load_model": "napari_unet.model.files",
    "model_to_bytes": "napari_unet.model.files",
    "model_from_bytes": "napari_unet.model.files",
    "read_image": "napari_unet.files.images",
    "write_image": "napari_unet.files.images",
    "atomic_write_bytes": "napari_unet.files.safe_write",
    "check_output_path": "napari_unet.files.safe_write",
    "check_metadata": "napari_unet.model.files",
    "is_model_file": "napari_unet.model.files",
    "is_complete_image": "napari_unet.files.images",
    "is_zarr_path": "napari_unet.files.images",
    "save_or_rescue": "napari_unet.model.files",
    "output_lock": "napari_unet.files.safe_write",
    "has_training_state": "napari_unet.model.files",
    "MODEL_FORMAT": "napari_unet.model.files",
    "MODEL_FORMAT_VERSION": "napari_unet.model.files",
    "ModelFileError": "napari_unet.model.files",
}

__all__ = list(_NAMES)

__getattr__ = deprecated_aliases(__name__, _NAMES)
