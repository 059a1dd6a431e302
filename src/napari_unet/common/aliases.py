"""Old module paths kept importable: a module-level ``__getattr__`` that hands out a name from the
module that defines it, with a :class:`DeprecationWarning` that names that module."""

from __future__ import annotations

import importlib
import warnings
from typing import Callable

__all__ = ["OLD_PATHS", "deprecated_module", "deprecated_aliases"]


#: the old module paths kept importable: each name they held -> the module that now defines it
OLD_PATHS = {
    "napari_unet.data": {
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
    },
    "napari_unet.io": {
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
    },
    "napari_unet.tiling": {
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
    },
}


def deprecated_module(old: str) -> tuple[Callable[[str], object], list[str]]:
    """The ``__getattr__`` and ``__all__`` of the old module ``old`` (a key of :data:`OLD_PATHS`)."""
    names = OLD_PATHS[old]
    return deprecated_aliases(old, names), list(names)


def deprecated_aliases(old: str, names: dict[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` of the old module ``old`` (e.g. ``"napari_unet.data"``): ``names`` maps
    each name it kept to the module that now defines it (e.g. ``"napari_unet.annotations.targets"``).

    >>> getattr_ = deprecated_aliases("napari_unet.old", {"check_axes": "napari_unet.common.axes"})
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("check_axes").__module__, caught[0].category.__name__
    ('napari_unet.common.axes', 'DeprecationWarning')
    """

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        public = "napari_unet" if name in importlib.import_module("napari_unet").__all__ else module
        warnings.warn(f"{old}.{name} is deprecated: import {name} from {public}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)

    return __getattr__
