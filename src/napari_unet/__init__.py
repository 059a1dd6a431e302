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
    "percentile_normalize": "model.normalization",
    "UNet": "model.unet",
    "predict_tiled": "predict.tiling",
    "predict_stack": "predict.tiling",
    "normalization_range": "predict.tiling",
    "predict_block": "predict.tiling",
    "predict_distributed": "cluster.distributed",
    "open_prediction": "files.ngff",
    "to_labels": "labels.instances",
    "label_options": "labels.instances",
    "add_large_cells": "labels.large_cells",
    "predict_half_scale": "labels.large_cells",
    "segment": "labels.segment",
    "weight_map": "annotations.weights",
    "fiji_weight_map": "annotations.weights",
    "elastic_deform": "dataset.augment",
    "make_targets": "annotations.targets",
    "instances_to_annotations": "annotations.targets",
    "validate_annotations": "annotations.planes",
    "training_slices": "annotations.planes",
    "TileSampler": "dataset.sampler",
    "train": "training.job",
    "Trainer": "training.trainer",
    "TrainEvent": "training.events",
    "TrainResult": "training.events",
    "save_model": "model.files",
    "load_model": "model.files",
    "read_image": "files.images",
    "write_image": "files.images",
    "export_bioimageio": "export.bioimageio",
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
