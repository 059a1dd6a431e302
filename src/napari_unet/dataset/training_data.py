"""What a :class:`~napari_unet.Trainer` learns from: the annotated planes of its images, their
targets, the held-out validation blocks and the tile sampler, and annotations swapped in while
training runs (the interactive loop: paint a correction, train on).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ..annotations.planes import resolve_axes, training_slices, validate_annotations
from ..annotations.targets import make_targets, painted_cell_diameter
from ..annotations.weights import border_sigma
from ..config import TrainConfig
from .sampler import TileSampler

__all__ = ["TrainingData", "config_border_sigma", "training_normalization"]

logger = logging.getLogger(__name__)


def config_border_sigma(config: TrainConfig, annotations, pixel_areas=None) -> float:
    """Width of the border term that ``config`` gives cells painted like ``annotations``
    (``sigma``, narrowed for small cells by ``sigma_per_diameter``:
    :func:`napari_unet.annotations.weights.border_sigma`; class mode has no cell diameter and keeps
    ``sigma``; ``pixel_areas`` as in :func:`~napari_unet.annotations.targets.painted_cell_diameter`)."""
    diameter = painted_cell_diameter(annotations, pixel_areas) if config.mode == "instances" else None
    return border_sigma(config.sigma, diameter, config.sigma_per_diameter)


def training_normalization(config: TrainConfig, normalization: dict | None) -> dict:
    """The normalization a run trains with: a continued model's, else the config's percentiles."""
    if normalization:
        return dict(normalization)
    return {"kind": "percentile", "low": float(config.normalize_low), "high": float(config.normalize_high)}


class TrainingData:
    """The annotated planes of ``images`` (checked at once: ValueError / TypeError before any
    training), normalized with ``normalization`` (None: the percentiles of ``config``).

    After :meth:`build` it holds ``sampler`` (training tiles), ``val_sampler`` (the held-out
    blocks, or None) and ``val_batches`` (fixed validation batches).
    """

    def __init__(self, images, annotations, axes_list, *, config: TrainConfig, normalization: dict | None = None):
        self.config = config
        self.images = images
        self.axes = axes_list
        self.normalization = training_normalization(config, normalization)
        self.resolved_axes: dict[int, str] = {}
        self._lock = threading.Lock()
        self._pending: dict[int, Any] = {}
        self.plane_lists: list[list] = []
        self.ann_lists: list[list] = []
        for i, (image, ann, axes) in enumerate(zip(images, annotations, axes_list)):
            planes, anns = self._slices(i, image, np.asarray(ann), axes)
            self.plane_lists.append(planes)
            self.ann_lists.append(anns)
        channels = {int(p.shape[0]) for planes in self.plane_lists for p in planes}
        if len(channels) > 1:
            raise ValueError(f"all images must have the same number of channels, got {sorted(channels)}")
        if not self.annotations():
            raise ValueError(
                "nothing is annotated: paint background (label 1) and "
                + ("cells (labels 2, 3, ...)" if config.mode == "instances" else "at least two classes (labels 1..K)")
            )
        n_classes = config.n_classes if config.mode == "classes" else None
        self.max_class = validate_annotations(self.annotations(), mode=config.mode, n_classes=n_classes)
        self.channels = channels.pop()
        self.sampler: TileSampler | None = None
        self.val_sampler: TileSampler | None = None
        self.val_batches: list = []
        self.sigma = self.border_sigma()
        self.n_annotated = 0

    def annotations(self) -> list[np.ndarray]:
        """Every annotated 2D plane, image by image."""
        return [a for anns in self.ann_lists for a in anns]

    def _slices(self, index: int, image, annotations, axes):
        """Normalized annotated planes of one image and their annotations (ValueError on bad shapes)."""
        try:
            pairs = training_slices(image, annotations, axes=axes, normalization=self.normalization)
            resolved = resolve_axes(tuple(np.shape(image)), np.shape(annotations), axes)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"image {index}: {exc}") from None
        self.resolved_axes[index] = resolved
        return [p for p, _ in pairs], [a for _, a in pairs]

    def targets_for(self, ann, *, n_classes: int, borders: bool):
        """Training targets of one 2D annotation plane (gaps, ring, borders, loss weights)."""
        cfg = self.config
        return make_targets(
            ann, mode=cfg.mode, n_classes=n_classes, gap=cfg.gap, w0=cfg.w0, sigma=self.sigma,
            class_weights=cfg.class_weights, ring=cfg.ring, ring_border=cfg.ring_border, borders=borders,
        )

    def build(self, *, seed: int, n_classes: int, borders: bool, input_shape, output_shape, batch_size: int, device):
        """Targets for every annotated plane, the validation split and the tile sampler."""
        cfg = self.config
        self._geometry = dict(n_classes=n_classes, borders=borders, input_shape=input_shape,
                              output_shape=output_shape, batch_size=batch_size, device=device)
        planes = [p for planes in self.plane_lists for p in planes]
        self._plane_keys = self._keys()
        self.sigma = self.border_sigma()
        targets = [self.targets_for(a, n_classes=n_classes, borders=borders) for a in self.annotations()]
        self.sampler = TileSampler(planes, targets, input_shape=input_shape, output_shape=output_shape,
                                   augment=cfg.augment, seed=seed)
        self.val_sampler = None
        if cfg.validation_fraction > 0:
            val = self.sampler.split_validation(cfg.validation_fraction, seed=seed + 1, block=cfg.validation_block)
            if val.n_annotated > 0:
                self.val_sampler = val
            else:
                logger.info("too little is annotated to hold out a validation set; training on everything")
        self._refresh_validation()
        self._count()

    def _keys(self):
        return [(i, k, p.shape) for i, planes in enumerate(self.plane_lists) for k, p in enumerate(planes)]

    def _count(self) -> None:
        samplers = [s for s in (self.sampler, self.val_sampler) if s is not None]
        self.n_annotated = int(sum(int(t.mask.sum()) for s in samplers for t in s.targets))

    def _refresh_validation(self) -> None:
        self.val_batches = []
        if self.val_sampler is not None and self.val_sampler.n_annotated > 0:
            g = self._geometry
            self.val_batches = self.val_sampler.fixed_batches(
                max_tiles=self.config.validation_tiles, batch_size=g["batch_size"], device=g["device"])

    def border_sigma(self) -> float:
        """Width of the border term for the painted cells (:func:`config_border_sigma`)."""
        return config_border_sigma(self.config, self.annotations())

    def cell_diameter(self) -> float | None:
        """Median diameter of the painted cells (instance mode; None otherwise or when none)."""
        if self.config.mode != "instances":
            return None
        return painted_cell_diameter(self.annotations())

    def set_annotations(self, index: int, annotations) -> None:
        """Queue fresh annotations for image ``index`` (thread-safe; see :meth:`apply_pending`).
        Shapes are checked at once (ValueError)."""
        if not 0 <= index < len(self.images):
            raise IndexError(f"image index {index} out of range (0..{len(self.images) - 1})")
        planes, anns = self._slices(index, self.images[index], np.asarray(annotations), self.axes[index])
        with self._lock:
            self._pending[index] = (planes, anns)

    def apply_pending(self, seed: int) -> bool:
        """Swap in queued annotations; True when the training data changed. The validation split
        keeps its held-out blocks unless annotated planes appeared or vanished (then everything
        is rebuilt, sampling from ``seed``). Invalid annotations are logged and ignored."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return False
        for index, (planes, anns) in pending.items():
            self.plane_lists[index] = planes
            self.ann_lists[index] = anns
        n_classes = self._geometry["n_classes"] if self.config.mode == "classes" else None
        try:
            validate_annotations(self.annotations(), mode=self.config.mode, n_classes=n_classes)
        except (ValueError, TypeError) as exc:
            logger.warning("new annotations ignored for now: %s", exc)
            return False
        keys = self._keys()
        if keys == self._plane_keys:
            position = {(i, k): n for n, (i, k, _) in enumerate(keys)}
            g = self._geometry
            sigma = self.border_sigma()
            changed = range(len(self.images)) if sigma != self.sigma else pending  # a new width: every plane
            self.sigma = sigma
            for index in changed:
                for k, ann in enumerate(self.ann_lists[index]):
                    self.sampler.set_targets(position[(index, k)],
                                             self.targets_for(ann, n_classes=g["n_classes"], borders=g["borders"]))
            self._refresh_validation()
            self._count()
        else:  # annotated planes appeared or vanished: new sampler and split
            self.build(seed=seed, **self._geometry)
        return True

    def intensity_range(self, index: int):
        """``(lows, highs)`` that training maps to 0 and 1 in image ``index`` (None: no normalization)."""
        from ..model.normalization import normalization_params

        axes = self.resolved_axes[index]
        channel_axis = axes.index("C") if "C" in axes else None
        lows, highs = normalization_params(self.images[index], self.normalization, channel_axis=channel_axis)
        return None if lows is None else (lows, highs)
