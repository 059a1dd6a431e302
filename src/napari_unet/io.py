"""Model files and image files.

Model files
-----------
A ``.unet`` model file is one zip archive holding

* ``model.json``: format name and version, package version, the architecture
  (:class:`~napari_unet.ModelConfig`), and ``model.metadata`` (mode, class names,
  normalization, tile geometry, training summary);
* ``weights.safetensors``: the weights, in the safetensors format.

Loading parses JSON and safetensors only: no pickle, so a model file never runs code.
Files are written to a temporary file in the target folder and renamed into place
(:func:`os.replace`), so an interrupted save never leaves a half-written model.

Image files
-----------
:func:`read_image` reads TIFF (ImageJ hyperstacks, OME-TIFF, plain) with tifffile and zarr
arrays (plain or OME-Zarr); axes come back as a string over ``"TZCYX"`` in that order.
:func:`write_image` writes TIFF (ImageJ-compatible where the data allow) or zarr (a path
ending in ``.zarr``), never replacing an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

from .images import is_complete_image, is_zarr_path, read_image, write_image
from .model_files import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    ModelFileError,
    check_metadata,
    has_training_state,
    is_model_file,
    load_model,
    model_from_bytes,
    model_to_bytes,
    save_model,
    save_or_rescue,
)
from .outputs import atomic_write_bytes, check_output_path, output_lock

__all__ = [
    "save_model",
    "load_model",
    "model_to_bytes",
    "model_from_bytes",
    "read_image",
    "write_image",
    "atomic_write_bytes",
    "check_output_path",
    "check_metadata",
    "is_model_file",
    "is_complete_image",
    "is_zarr_path",
    "save_or_rescue",
    "output_lock",
    "has_training_state",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "ModelFileError",
]
