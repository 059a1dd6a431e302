"""napari-unet: segment cells with a U-Net trained from a few painted strokes.

The package root exposes the core API only (plain numpy / torch, no Qt, no napari). Names are
imported lazily, so ``import napari_unet`` is fast and the napari Plugins menu opens quickly;
``from napari_unet import UNet`` loads torch on first use.
"""

from __future__ import annotations

import importlib

from ._version import __version__

# public name -> module that defines it
_EXPORTS = {
    "ModelConfig": "config",
    "AugmentConfig": "config",
    "TrainConfig": "config",
    "MODEL_PRESETS": "config",
    "model_preset": "config",
    "percentile_normalize": "normalization",
    "UNet": "model",
    "predict_tiled": "tiling",
    "predict_stack": "tiling",
    "normalization_range": "tiling",
    "predict_block": "tiling",
    "predict_distributed": "distributed",
    "open_prediction": "ngff",
    "to_labels": "postprocess",
    "label_options": "postprocess",
    "add_large_cells": "large_cells",
    "predict_half_scale": "large_cells",
    "segment": "segmentation",
    "weight_map": "weights",
    "fiji_weight_map": "weights",
    "elastic_deform": "augment",
    "make_targets": "data",
    "instances_to_annotations": "data",
    "validate_annotations": "data",
    "training_slices": "data",
    "TileSampler": "data",
    "train": "train_job",
    "Trainer": "training",
    "TrainEvent": "events",
    "TrainResult": "events",
    "save_model": "io",
    "load_model": "io",
    "read_image": "io",
    "write_image": "io",
    "export_bioimageio": "bioimageio",
    "make_touching_cells": "samples",
    "load_nuclei": "samples",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
