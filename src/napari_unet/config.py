"""Configuration dataclasses: the network, augmentation and training parameters.

Every field is documented; the same text is shown in the widgets' tooltips and in
``docs/parameters.md``. The dataclasses are frozen: derive a changed copy with
:func:`dataclasses.replace`. ``to_dict`` / ``from_dict`` give a JSON-able form that is
stored inside model files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .common.checks import check_choice, check_float, check_int, check_pair
from .common.pixel_size import check_voxel_size

__all__ = [
    "ModelConfig",
    "AugmentConfig",
    "TrainConfig",
    "MODEL_PRESETS",
    "model_preset",
]


MAX_CLASSES = 256
"""Most output classes a network may have (class mode numbers classes 1..K)."""
MAX_CHANNELS = 1024
MAX_DEPTH = 8
MAX_PARAMETERS = 2_000_000_000
"""Largest network a config (or a model file) may ask for: 8 GB of float32 weights."""


def _check_bool(obj, name: str) -> None:
    value = getattr(obj, name)
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def _to_dict(obj) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = _to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _from_dict(cls, data: dict[str, Any]):
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`napari_unet.UNet`.

    The defaults are the network of Ronneberger et al. (2015): 4 poolings, 64 -> 1024
    channels, unpadded convolutions (572 x 572 in -> 388 x 388 out), 23 conv layers.
    """

    in_channels: int = 1
    """Number of image channels (1 for gray, 3 for RGB, C for a multichannel image)."""
    n_classes: int = 2
    """Number of output classes, background included (2 = background + cell)."""
    depth: int = 4
    """Number of 2x2 max-poolings in the contracting path (the paper uses 4)."""
    base_channels: int = 64
    """Channels of the first level; each level doubles them (the paper uses 64)."""
    padding: Literal["valid", "same"] = "valid"
    """"valid": unpadded convolutions as in the paper (output smaller than input, used with
    overlap-tile prediction); "same": zero-padded convolutions (output = input size)."""
    batch_norm: bool = False
    """Batch normalization after each convolution (not in the paper; helps with Adam)."""
    dropout: float = 0.0
    """Drop-out probability at the end of the contracting path (the paper uses 0.5)."""
    spatial_dims: int = 2
    """2: a network of planes (Y, X), applied plane by plane to a stack; 3: the 3D U-Net of
    Çiçek et al. (2016), 3x3x3 convolutions over volumes (Z, Y, X), trained from painted slices."""
    xy_only_pools: int = 0
    """3D networks: how many of the first poolings pool Y and X only, for stacks whose z-step is
    coarser than the pixel size (nnU-Net's rule: Z is pooled once the pooled pixels have caught up
    with the z-step, :func:`napari_unet.config.anisotropic_pools`); 0 pools all three axes at
    every level."""

    def __post_init__(self):
        check_int("spatial_dims", self.spatial_dims, minimum=2, maximum=3)
        check_int("xy_only_pools", self.xy_only_pools, minimum=0, maximum=self.depth if self.spatial_dims == 3 else 0)
        check_int("in_channels", self.in_channels, minimum=1, maximum=MAX_CHANNELS)
        check_int("n_classes", self.n_classes, minimum=2, maximum=MAX_CLASSES)
        check_int("depth", self.depth, minimum=1, maximum=MAX_DEPTH)
        check_int("base_channels", self.base_channels, minimum=1, maximum=1024)
        check_choice("padding", self.padding, ("valid", "same"))
        check_float("dropout", self.dropout, minimum=0.0, below=1.0)
        _check_bool(self, "batch_norm")
        n = self.parameter_count()
        if n > MAX_PARAMETERS:
            raise ValueError(f"depth={self.depth} with base_channels={self.base_channels} makes a network of "
                             f"{n / 1e9:.1f} billion parameters (at most {MAX_PARAMETERS / 1e9:.0f} billion; "
                             "the paper's network has 0.03 billion)")

    def parameter_count(self) -> int:
        """Number of weights of the network this config builds (without building it)."""
        c = [int(self.base_channels) * 2**i for i in range(int(self.depth) + 1)]
        bn = 2 if self.batch_norm else 1  # batch norm: weight, bias (no conv bias; its running statistics are no weights)
        k = 3 ** int(self.spatial_dims)  # weights of one 3x3 (3x3x3) kernel

        def double(cin, cout):
            return k * cin * cout + k * cout * cout + 2 * bn * cout

        n = double(int(self.in_channels), c[0])
        for i in range(1, len(c)):
            up = 4 if self.spatial_dims == 2 else (4 if i - 1 < int(self.xy_only_pools) else 8)  # the up-conv kernel
            n += double(c[i - 1], c[i])  # contracting path
            n += up * c[i] * c[i - 1] + c[i - 1] + double(2 * c[i - 1], c[i - 1])  # up-conv, then two convs
        return n + c[0] * int(self.n_classes) + int(self.n_classes)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


MODEL_PRESETS: dict[str, ModelConfig] = {
    # the paper's network: ~31.0 M parameters, 572 -> 388
    "paper": ModelConfig(depth=4, base_channels=64, dropout=0.5),
    # a small network that trains usefully fast on a laptop CPU: zero-padded ("same") convolutions
    # make every pixel of a 128 x 128 training tile count in the loss (a valid net of this depth
    # keeps ~28 % of a 188 tile), and batch norm makes Adam converge in a few hundred iterations
    # (measured: benchmarks/README.md)
    "fast": ModelConfig(depth=3, base_channels=16, padding="same", batch_norm=True, dropout=0.0),
    # for tests and smoke runs only
    "tiny": ModelConfig(depth=2, base_channels=4, dropout=0.0),
    # a 3D U-Net (Çiçek et al. 2016) that trains on a CPU from a few painted slices of a z-stack:
    # "same" convolutions and batch norm as "fast", fewer channels (a 3x3x3 kernel costs 3x a
    # 3x3 one); training adapts its first poolings to the voxel size (anisotropic_pools)
    "fast3d": ModelConfig(depth=3, base_channels=16, padding="same", batch_norm=True, dropout=0.0, spatial_dims=3),
    # Çiçek et al.'s 3D U-Net, for a GPU: three poolings, unpadded 3x3x3 convolutions, batch norm,
    # 116 x 132 x 132 -> 28 x 44 x 44 (z, y, x). Its synthesis path has their widths (256, 128, 64);
    # each analysis level has two convolutions of equal width where theirs doubles inside the level
    # (32-64 ... 256-512): 22.4 M parameters against their 19.1 M
    "paper3d": ModelConfig(depth=3, base_channels=64, padding="valid", batch_norm=True, dropout=0.0, spatial_dims=3),
}

#: a preset for each kind of network
PRESETS_3D = tuple(name for name, cfg in MODEL_PRESETS.items() if cfg.spatial_dims == 3)


def anisotropic_pools(spacing, depth: int) -> int:
    """How many of the first poolings of a 3D network should pool Y and X only for voxels of
    ``spacing`` (z, y, x): Z is pooled from the level at which the pooled pixel size has reached
    half the z-step (nnU-Net's rule: an axis is pooled while its spacing is at most twice the
    finest one).

    >>> anisotropic_pools((1.0, 1.0, 1.0), 3), anisotropic_pools((2.0, 0.5, 0.5), 3), anisotropic_pools((10, 0.1, 0.1), 3)
    (0, 1, 3)
    """
    if spacing is None:
        return 0
    z, xy = float(spacing[0]), min(float(spacing[1]), float(spacing[2]))
    levels = 0
    while levels < depth and z > 2 * xy:
        xy *= 2
        levels += 1
    return levels


def model_preset(name: str, **overrides) -> ModelConfig:
    """Return the named preset (``"paper"``, ``"fast"``, ``"tiny"``, ``"fast3d"`` or ``"paper3d"``), with fields
    overridden."""
    try:
        base = MODEL_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown network preset {name!r}; choose one of {sorted(MODEL_PRESETS)}") from None
    return dataclasses.replace(base, **overrides)


@dataclass(frozen=True)
class AugmentConfig:
    """Random transformations applied to every training tile (image, target and weights alike)."""

    enabled: bool = True
    """Master switch: False trains on the raw tiles."""
    elastic: bool = True
    """Elastic deformation: random displacements on a coarse grid, smoothly interpolated."""
    elastic_grid: int = 3
    """Number of control points per axis of the coarse displacement grid (the paper: 3x3)."""
    elastic_sigma: float = 10.0
    """Standard deviation of the control-point displacements in pixels (the paper: 10)."""
    rotate90: bool = True
    """Random multiples of 90 degree rotations."""
    flip: bool = True
    """Random horizontal / vertical flips."""
    rotation_degrees: float = 10.0
    """Maximum free rotation in degrees (uniform in +-rotation_degrees); 0 switches it off."""
    scale_range: tuple[float, float] = (0.6, 1.6)
    """Range of the random isotropic scale factor (log-uniform). Wide, so that a network taught
    by a few painted cells also finds cells of other sizes (chosen on the quality suite,
    benchmarks/README.md; the earlier default was (0.9, 1.1))."""
    shift_pixels: float = 8.0
    """Maximum random shift in pixels."""
    gamma_range: tuple[float, float] = (0.8, 1.25)
    """Range of the random gamma applied to the (normalized) gray values."""
    contrast_range: tuple[float, float] = (0.8, 1.2)
    """Range of the random contrast factor."""
    brightness: float = 0.1
    """Maximum random brightness offset (in normalized intensity units)."""
    noise_std: float = 0.03
    """Maximum standard deviation of the additive Gaussian noise (normalized units)."""

    def __post_init__(self):
        check_int("elastic_grid", self.elastic_grid, minimum=2, maximum=64)
        for name in ("enabled", "elastic", "rotate90", "flip"):
            _check_bool(self, name)
        for name in ("elastic_sigma", "rotation_degrees", "shift_pixels", "brightness", "noise_std"):
            check_float(name, getattr(self, name), minimum=0.0)
        for name in ("scale_range", "gamma_range", "contrast_range"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {value!r}")
            low = check_float(f"{name}[0]", value[0], above=0.0)
            check_float(f"{name}[1]", value[1], minimum=low)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AugmentConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that steers :func:`napari_unet.train`."""

    mode: Literal["instances", "classes"] = "instances"
    """"instances": annotations 1 = background, 2, 3, ... = one id per cell (touching cells get
    separated); "classes": annotations 1..K are classes (1 = background)."""
    preset: str = "fast"
    """Network preset: "paper" (the paper's 31 M parameter net, for a GPU), "fast" (CPU), "fast3d" (a 3D
    U-Net for z-stacks on a CPU), "paper3d" (Çiçek et al.'s 3D U-Net, for a GPU) or "tiny" (tests)."""
    model: ModelConfig | None = None
    """Explicit architecture; overrides ``preset`` when given."""
    n_classes: int | None = None
    """Number of classes in class mode (default: the largest annotated id); 2 in instance mode."""
    iterations: int | None = 2000
    """Number of training iterations (None: limited by ``time_limit_s`` alone)."""
    time_limit_s: float | None = None
    """Stop after this many seconds (None: limited by ``iterations`` alone)."""
    tile_shape: tuple[int, ...] | None = None
    """Network input tile (Y, X) for training, (Z, Y, X) for a 3D network; None picks a valid size
    for the preset."""
    batch_size: int | None = None
    """Tiles per iteration; None: the network's (4 tiles of a 2D network, 2 patches of a 3D one)."""
    optimizer: Literal["sgd", "adam"] = "adam"
    """"sgd": the paper's SGD with high momentum; "adam": Adam, robust for small networks."""
    learning_rate: float | None = None
    """Step size; None picks a good default for the optimizer (SGD 0.01, Adam 1e-3)."""
    momentum: float = 0.99
    """SGD momentum (the paper uses 0.99)."""
    weight_decay: float = 0.0
    """L2 weight decay."""
    lr_schedule: Literal["constant", "cosine", "step"] = "cosine"
    """Learning-rate schedule over the iteration budget."""
    keep_model: Literal["best", "last"] | None = None
    """Which weights training ends with: "best", those with the lowest validation loss (the last
    ones when nothing is held out), or "last", the final ones. A run stopped early always keeps
    the best. None: the network's (:func:`napari_unet.model.fit.kept_weights`): "best" for a 2D
    network, "last" (averaged, see ``ema_decay``) for a 3D one. (The two compared:
    benchmarks/README.md, "Which weights to keep" and "A 3D U-Net from painted slices".)"""
    ema_decay: float | None = None
    """Keep an exponential moving average of the weights (Polyak averaging) with this decay per
    iteration; validation, previews and the model kept use the averaged weights, which vary much
    less from run to run than the last ones. 0 switches it off; None: the network's (off for a 2D
    network, 0.99 for a 3D one, whose validation on a few painted planes is too noisy to pick the
    best weights from)."""
    w0: float = 10.0
    """Weight of the border term between touching cells (the paper: 10)."""
    sigma: float = 5.0
    """Width of the border term in pixels (the paper: about 5)."""
    sigma_per_diameter: float | None = 0.25
    """Instance mode: for painted cells narrower than ``sigma / sigma_per_diameter`` (20 px), the
    border term narrows to this fraction of their median diameter (at least 1 px), so that it
    stresses the gap between small touching cells instead of weighing them whole
    (:func:`napari_unet.annotations.weights.border_sigma`). None: always ``sigma``, the paper's rule."""
    class_weights: Any = "balanced"
    """"balanced" (inverse class frequency among annotated pixels), None (all 1) or one weight per class."""
    gap: bool = True
    """Instance mode: turn pixels where two different cells touch into a 1-px background gap."""
    borders: bool = False
    """Instance mode: learn three classes, background, cell interior and cell border (the
    outline of each painted cell); prediction seeds one instance per interior, so touching
    cells stay apart. False: the paper's two classes, background and cell."""
    ring: int = 1
    """Instance mode: unpainted pixels within this many pixels of a painted cell count as
    background: a painted cell is a complete cell, so it says where it ends (the same one-pixel
    line as the gap between two touching cells). 0 = the paper's rule: only painted pixels count.
    Paint cells whole with it: half a cell teaches that its other half is background."""
    ring_border: bool = False
    """Instance mode: ring pixels get the border term of a touching-cell gap (weight ~w0), so
    the loss weighs every painted cell's edge as it weighs the gap between two cells."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Data augmentation parameters."""
    normalize_low: float = 1.0
    """Lower percentile mapped to 0 by the per-image normalization."""
    normalize_high: float = 99.8
    """Upper percentile mapped to 1 by the per-image normalization."""
    validation_fraction: float = 0.1
    """Fraction of the annotated pixels held out to report validation loss and IoU (0 = none)."""
    device: str | None = None
    """"cuda", "mps", "cpu" or None (the fastest available)."""
    seed: int = 0
    """Random seed: training on the CPU is reproducible for a fixed seed."""
    checkpoint_dir: str | None = None
    """Folder for checkpoints (None: no checkpoints)."""
    checkpoint_every_s: float = 300.0
    """Seconds between checkpoints."""
    log_every: int = 1
    """Yield a progress event every N iterations."""
    validate_every: int = 25
    """Compute the validation loss and IoU every N iterations."""
    validation_tiles: int = 16
    """At most this many (un-augmented) tiles over the held-out pixels make the validation set."""
    validation_block: int = 32
    """Side in pixels of the square blocks of annotated pixels held out for validation."""
    preview_every: int = 50
    """Predict the preview region (if one is set) every N iterations (0 = never); ignored when
    ``preview_every_s`` is set."""
    preview_every_s: float | None = None
    """Predict the preview region (if one is set) by time instead: the first about 2 s into
    training, then every this many seconds, spaced out so that previews take at most about 5 %
    of the training time (:class:`napari_unet.training.schedule.PreviewClock`). The Train widget uses it:
    previews come every few seconds however fast the machine trains (and none is forced after
    the last iteration: the widget previews the kept model once the run ends)."""
    class_names: tuple[str, ...] | None = None
    """Names of the output classes, background first (default: "background", "cell" /
    "class 2", ...)."""
    mixed_precision: bool = True
    """On CUDA, train in mixed precision (bfloat16 where supported, else float16 with loss
    scaling); MPS and CPU always train in float32."""
    pixel_size: tuple[float, ...] | None = None
    """Micrometres per pixel (y, x) of the training images (a number for square pixels), or per
    voxel (z, y, x) of z-stacks; kept in ``model.metadata["pixel_size"]`` (y, x) and
    ``["voxel_size"]`` (z, y, x) so prediction resamples images of another pixel size to it. A 3D
    network pools Z only once the pooled pixels have caught up with the z-step
    (:func:`anisotropic_pools`), and its elastic deformation is scaled by the voxel size.
    None: unknown, cubic voxels for a 3D network (the widgets and the CLI fill it from the
    layer scale / file metadata)."""

    def __post_init__(self):
        check_choice("mode", self.mode, ("instances", "classes"))
        if self.iterations is None and self.time_limit_s is None:
            raise ValueError("give iterations, time_limit_s or both: training needs a budget")
        if self.iterations is not None:
            object.__setattr__(self, "iterations", check_int("iterations", self.iterations, minimum=1))
        if self.time_limit_s is not None:
            check_float("time_limit_s", self.time_limit_s, above=0.0)
        if self.n_classes is not None:
            check_int("n_classes", self.n_classes, minimum=2, maximum=MAX_CLASSES)
        if self.tile_shape is not None:
            tile = self.tile_shape
            if not isinstance(tile, (str, bytes)) and hasattr(tile, "__len__") and len(tile) == 3:
                z = check_int("tile_shape[0]", tile[0], minimum=1, maximum=8192)
                tile = (z, *check_pair("tile_shape", tile[1:], minimum=8, maximum=8192))
            else:
                tile = check_pair("tile_shape", tile, minimum=8, maximum=8192)
            object.__setattr__(self, "tile_shape", tile)
        object.__setattr__(self, "pixel_size", check_voxel_size(self.pixel_size, "pixel_size"))
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, minimum=1, maximum=1024)
        check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        if self.learning_rate is not None:
            check_float("learning_rate", self.learning_rate, above=0.0, maximum=10.0)
        check_float("momentum", self.momentum, minimum=0.0, below=1.0)
        check_float("weight_decay", self.weight_decay, minimum=0.0)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine", "step"))
        if self.keep_model is not None:
            check_choice("keep_model", self.keep_model, ("best", "last"))
        if self.ema_decay is not None:
            check_float("ema_decay", self.ema_decay, minimum=0.0, below=1.0)
        check_float("w0", self.w0, minimum=0.0, maximum=1e4)
        check_float("sigma", self.sigma, above=0.0, maximum=1e4)
        if self.sigma_per_diameter is not None:
            check_float("sigma_per_diameter", self.sigma_per_diameter, minimum=0.0, maximum=100.0)
        cw = self.class_weights
        if cw is not None and cw != "balanced":
            if isinstance(cw, (str, bytes)) or not hasattr(cw, "__len__"):
                raise ValueError(f'class_weights must be "balanced", None or one weight per class, got {cw!r}')
            for i, w in enumerate(cw):
                check_float(f"class_weights[{i}]", w, minimum=0.0)
        for name in ("gap", "borders", "ring_border", "mixed_precision"):
            _check_bool(self, name)
        check_int("ring", self.ring, minimum=0, maximum=100)
        if not isinstance(self.augment, AugmentConfig):
            raise TypeError(f"augment must be an AugmentConfig, got {type(self.augment).__name__}")
        if self.model is not None and not isinstance(self.model, ModelConfig):
            raise TypeError(f"model must be a ModelConfig or None, got {type(self.model).__name__}")
        low = check_float("normalize_low", self.normalize_low, minimum=0.0, below=100.0)
        check_float("normalize_high", self.normalize_high, above=low, maximum=100.0)
        check_float("validation_fraction", self.validation_fraction, minimum=0.0, below=1.0)
        if self.device is not None and not isinstance(self.device, str):
            raise TypeError(f'device must be "cuda", "mps", "cpu" or None, got {self.device!r}')
        check_int("seed", self.seed)
        if self.checkpoint_every_s is not None:
            check_float("checkpoint_every_s", self.checkpoint_every_s, above=0.0)
        for name in ("log_every", "validate_every", "validation_tiles", "validation_block"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("preview_every", self.preview_every, minimum=0)
        if self.preview_every_s is not None:
            check_float("preview_every_s", self.preview_every_s, above=0.0)
        if self.model is None and self.preset not in MODEL_PRESETS:
            raise ValueError(f"unknown network preset {self.preset!r}; choose one of {sorted(MODEL_PRESETS)}")

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        if isinstance(data.get("augment"), dict):
            data["augment"] = AugmentConfig.from_dict(data["augment"])
        if isinstance(data.get("model"), dict):
            data["model"] = ModelConfig.from_dict(data["model"])
        return _from_dict(cls, data)
