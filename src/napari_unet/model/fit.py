"""Does this model fit this data? One answer, used by prediction, training, the CLI and the widgets.

Each function raises a ValueError in plain words (what the model takes, what the data has,
what to do) and returns what the caller needs.
"""

from __future__ import annotations

import dataclasses

from ..config import ModelConfig, TrainConfig, anisotropic_pools, model_preset

__all__ = ["channels_of", "check_channels", "image_axes", "classes_for_training", "model_config_for", "default_tile_shape",
           "kept_weights", "EMA_DECAY_3D",
           "spatial_dims_for", "default_batch_size"]


def channels_of(shape, axes: str) -> int:
    """Channels of data of ``shape`` named by ``axes`` (1 without a ``C`` axis)."""
    return int(shape[axes.index("C")]) if "C" in axes else 1


def check_channels(model, shape, axes: str, name: str = "image") -> int:
    """The channel count of the data, if it is the one ``model`` takes; else a ValueError."""
    shape = tuple(int(s) for s in shape)
    wanted = int(model.config.in_channels)
    n = channels_of(shape, axes)
    if n != wanted:
        given = f"{n} channel(s)" + (f" on axis C of shape {shape}" if "C" in axes else f" (no C in axes {axes!r})")
        raise ValueError(
            f"{name} has {given}, but the model expects {wanted} input channel(s)"
            + ("; name the channel axis with 'C' in axes" if "C" not in axes and wanted > 1 else "")
        )
    return n


def classes_for_training(config, *, in_channels: int, max_class: int, model=None) -> int:
    """The number of classes the network of a training run predicts: ``model``'s when training
    continues (after checking it fits the images, mode and annotations), else what ``config``
    and the annotations ask for."""
    if model is not None:
        n_classes = int(model.config.n_classes)
        if model.config.in_channels != in_channels:
            raise ValueError(f"the model takes {model.config.in_channels} channel(s) but the images have {in_channels}")
        old_mode = (getattr(model, "metadata", None) or {}).get("mode")
        if old_mode is not None and old_mode != config.mode:
            raise ValueError(f"the model was trained in {old_mode!r} mode but config.mode is {config.mode!r}")
        if max_class > n_classes:
            raise ValueError(f"the annotations use {max_class} classes but the model predicts {n_classes}")
        if config.mode == "instances" and n_classes not in (2, 3):
            raise ValueError(f"an instance-mode model predicts 2 or 3 classes, this one {n_classes}")
        return n_classes
    if config.mode == "instances":
        return 3 if config.borders else 2
    n_classes = int(config.n_classes or max(max_class, 2))
    if max_class > n_classes:
        raise ValueError(f"the annotations use {max_class} classes but config.n_classes is {n_classes}")
    return n_classes


# training tile (network input) per preset; "valid" nets round up to the next valid size
_PRESET_TILES = {"paper": (572, 572), "fast": (128, 128), "tiny": (92, 92), "fast3d": (16, 80, 80),
                 "paper3d": (116, 132, 132)}


def model_config_for(config: TrainConfig, in_channels: int, n_classes: int) -> ModelConfig:
    """The architecture a new training run builds: ``config.model`` or its preset, sized to the data."""
    if config.model is not None:
        return dataclasses.replace(config.model, in_channels=in_channels, n_classes=n_classes)
    preset = model_preset(config.preset, in_channels=in_channels, n_classes=n_classes)
    if preset.spatial_dims == 3 and config.pixel_size is not None and len(config.pixel_size) == 3:
        # a 3D preset pools Z only once the pooled pixels have caught up with the z-step
        preset = dataclasses.replace(preset, xy_only_pools=anisotropic_pools(config.pixel_size, preset.depth))
    return preset


def spatial_dims_for(config: TrainConfig, model=None) -> int:
    """2 or 3: the kind of network a training run trains (``model``'s, else the config's)."""
    if model is not None:
        return int(model.config.spatial_dims)
    return int((config.model or model_preset(config.preset)).spatial_dims)


def preset_of(model_config: ModelConfig) -> str | None:
    """The preset whose architecture ``model_config`` is (channels and classes aside), else None."""
    for name in _PRESET_TILES:
        if model_preset(name).spatial_dims != model_config.spatial_dims:
            continue
        preset = model_preset(name, in_channels=model_config.in_channels, n_classes=model_config.n_classes,
                              xy_only_pools=model_config.xy_only_pools if model_config.spatial_dims == 3 else 0)
        if preset == model_config:
            return name
    return None


def _trained_tile(model) -> tuple[int, ...] | None:
    """The training tile recorded in ``model``'s metadata (a model trained before), else None."""
    tile = ((getattr(model, "metadata", None) or {}).get("tile") or {}).get("train_input_shape")
    try:
        dims = int(model.config.spatial_dims)
        return tuple(int(t) for t in tile) if tile is not None and len(tile) == dims else None
    except (TypeError, ValueError):
        return None


def default_tile_shape(model, config: TrainConfig | None = None) -> tuple[int, ...]:
    """The training input tile, made valid for ``model``: ``config.tile_shape``; else the tile
    the model was trained on (training continues as it began); else its preset's tile (by
    name, or an explicit architecture equal to a preset's: the Train widget's and the script's
    "fast" network train alike); else 572 / 188 / 92 by depth."""
    wanted = None
    if config is not None and config.tile_shape is not None:
        wanted = tuple(int(t) for t in config.tile_shape)
        if len(wanted) != model.config.spatial_dims:
            raise ValueError(f"tile_shape {wanted} has {len(wanted)} sizes, the network is "
                             f"{model.config.spatial_dims}D: give (" + ("Z, " if model.config.spatial_dims == 3 else "")
                             + "Y, X)")
    if wanted is None:
        wanted = _trained_tile(model)
    if wanted is None:
        preset = config.preset if config is not None and config.model is None else preset_of(model.config)
        if preset in _PRESET_TILES:
            wanted = _PRESET_TILES[preset]
        else:
            depth = model.config.depth
            wanted = {4: (572, 572), 3: (188, 188), 2: (92, 92)}.get(depth, (188, 188))
            if model.config.spatial_dims == 3:
                wanted = (16, *(s // 2 for s in wanted))
    return tuple(int(s) for s in model.valid_input_shape(wanted))


def default_batch_size(model, config: TrainConfig) -> int:
    """Tiles per training iteration: ``config.batch_size``, else 4 tiles of a 2D network and 2
    patches of a 3D one (a 3D patch holds about 16 times the voxels of a 2D tile's pixels:
    more, smaller steps in the same time; benchmarks/README.md, "A 3D U-Net from painted slices")."""
    if config.batch_size is not None:
        return int(config.batch_size)
    return 2 if model.config.spatial_dims == 3 else 4


#: the Polyak average of a 3D network's weights (``TrainConfig.ema_decay`` None)
EMA_DECAY_3D = 0.99


def kept_weights(model, config: TrainConfig) -> tuple[str, float]:
    """``(keep_model, ema_decay)`` of a run: the config's, else the network's. A 2D network keeps
    its best weights, not averaged; a 3D network keeps the last ones, averaged with decay
    :data:`EMA_DECAY_3D`: its validation holds a few blocks of a few painted planes, too noisy to
    pick weights by (a 120 s run kept the weights of an early iteration that found no object:
    benchmarks/README.md, "A 3D U-Net from painted slices")."""
    three_d = model.config.spatial_dims == 3
    keep = config.keep_model if config.keep_model is not None else ("last" if three_d else "best")
    decay = config.ema_decay if config.ema_decay is not None else (EMA_DECAY_3D if three_d else 0.0)
    return keep, float(decay)


def image_axes(image, model) -> str:
    """Axes of one image plane for ``model``: "YX", or "CYX" when it has the model's channels first."""
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        if shape[0] != model.config.in_channels:
            hint = ""
            if shape[-1] == model.config.in_channels:
                hint = "; for channels last (e.g. RGB) use predict_stack(model, image, axes='YXC')"
            elif shape[-1] in (3, 4) and shape[0] > 4:
                hint = (f"; it looks like an {'RGB' if shape[-1] == 3 else 'RGBA'} image with the channels last, "
                        f"but the model takes {model.config.in_channels} channel(s): convert it to gray "
                        "(e.g. skimage.color.rgb2gray) or train a model on RGB images")
            elif model.config.in_channels == 1 and shape[0] > 4:
                hint = "; for a stack of planes use predict_stack(model, data, axes='ZYX')"
            raise ValueError(
                f"image has shape {shape}: expected (C, Y, X) with C = {model.config.in_channels} "
                f"channel(s) as the model expects, got C = {shape[0]}{hint}"
            )
        return "CYX"
    raise ValueError(
        f"image must be (Y, X) or (C, Y, X), got shape {shape} ({len(shape)} axes); "
        "for stacks use predict_stack(model, data, axes='ZYX')"
    )
