"""The Train widget's settings: annotation mode, network, budget, batch, augmentation, device,
preview and the optional weight-map and uncertainty layers."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from qtpy.QtGui import QValidator
from qtpy.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QSpinBox, QWidget

from ...common.progress import format_seconds, parse_duration
from ..shared.controls import MODE_CHOICES, DeviceCombo, choice_combo
from ..shared.layers import common_pixel_size, has_z, image_axes

PRESETS = [
    ("fast", "fast: small network (CPU friendly)"),
    ("paper", "paper: the paper's 31 M parameter U-Net (GPU)"),
    ("tiny", "tiny: smoke tests only"),
    ("fast3d", "fast3d: 3D U-Net for z-stacks (3x3x3 convolutions)"),
    ("paper3d", "paper3d: Çiçek et al.'s 3D U-Net for z-stacks (GPU)"),
]
MODES = MODE_CHOICES


def channels_and_classes(pairs, mode: str) -> tuple[int, int]:
    """``(in_channels, n_classes)`` of a new network for the ``(image, labels)`` layer ``pairs``."""
    channels = set()
    for image, _ in pairs:
        axes = image_axes(image)
        channels.add(int(image.data.shape[axes.index("C")]) if "C" in axes else 1)
    if len(channels) > 1:
        raise ValueError(f"the checked images have different channel counts {sorted(channels)}: train on one kind")
    in_channels = channels.pop() if channels else 1
    n_classes = 2
    if mode == "classes":
        n_classes = max(2, max(int(np.max(labels.data)) for _, labels in pairs))
    return in_channels, n_classes


def check_z_stacks(pairs, in_channels: int = 1) -> None:
    """ValueError in plain words unless every image of the ``(image, labels)`` layer ``pairs`` is a
    z-stack: a 3D network trains on volumes."""
    flat = [image.name for image, _ in pairs if not has_z(image, in_channels)]
    if flat:
        names = ", ".join(repr(name) for name in flat)
        raise ValueError(f"the 3D network trains on z-stacks, and {names} has no Z axis: choose a 2D network "
                         "(fast, paper) or uncheck the images that are not z-stacks")


class DurationSpin(QSpinBox):
    """A duration in whole seconds, typed as people write one ("45 s", "1:30", "5 min", "1 h";
    a bare number is minutes) and shown as m:ss; 0 reads "no limit"."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setRange(0, 24 * 3600)
        self.setSingleStep(15)
        self.setSpecialValueText("no limit")

    def textFromValue(self, value: int) -> str:  # noqa: N802 - Qt API
        return format_seconds(value)

    def valueFromText(self, text: str) -> int:  # noqa: N802 - Qt API
        try:
            return int(round(parse_duration(text)))
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):  # Qt API
        try:
            seconds = parse_duration(text)
        except ValueError:
            return QValidator.State.Intermediate, text, pos
        state = QValidator.State.Acceptable if seconds <= self.maximum() else QValidator.State.Invalid
        return state, text, pos


class TrainSettings(QWidget):
    """The form of training settings (a plain QWidget; the Train widget reads its controls)."""

    CONTROLS = ("mode_combo", "preset_combo", "iterations_spin", "time_spin", "batch_spin", "augment_check",
                "device_combo", "preview_spin", "weight_check", "uncertainty_check")

    def __init__(self, parent=None):
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.mode_combo = choice_combo(
            MODES,
            "cells (instances): 1 = background, 2, 3, ... = one id per cell; touching cells are "
            "separated.\nclasses: 1..K are classes (1 = background).",
        )
        form.addRow("annotations are", self.mode_combo)
        self.preset_combo = choice_combo(
            PRESETS,
            "fast: depth 3, 16 base channels, trains in minutes on a laptop CPU.\n"
            "paper: the original U-Net (depth 4, 64 base channels, 31 M parameters): use a GPU.\n"
            "tiny: depth 2, 4 channels, for smoke tests.\n"
            "fast3d: a 3D U-Net (Çiçek et al. 2016) for z-stacks, trained from a few painted slices; "
            "its first poolings follow the voxel size (the layer's scale).\n"
            "paper3d: Çiçek et al.'s 3D U-Net (unpadded convolutions, 116 x 132 x 132 tiles, 22 M parameters): "
            "use a GPU.",
        )
        form.addRow("network", self.preset_combo)
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setRange(0, 1_000_000)
        self.iterations_spin.setSingleStep(100)
        self.iterations_spin.setValue(2000)
        self.iterations_spin.setSpecialValueText("no limit")
        self.iterations_spin.setToolTip("Training iterations (0 = no limit: stop with the time limit or Stop).")
        form.addRow("iterations", self.iterations_spin)
        self.time_spin = DurationSpin()
        self.time_spin.setToolTip("Stop after this long, e.g. 45 s, 1:30 or 5 min (a bare number is minutes; "
                                  "0 = no limit). Training stops at whichever comes first: iterations or time.")
        form.addRow("time limit", self.time_spin)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 64)
        self.batch_spin.setValue(0)
        self.batch_spin.setSpecialValueText("auto")
        self.batch_spin.setToolTip("Tiles per iteration (auto: 4 tiles of a 2D network, 2 patches of a 3D one). "
                                   "Lower it when the GPU runs out of memory.")
        form.addRow("batch size", self.batch_spin)
        self.augment_check = QCheckBox("augment (elastic, flips, rotations, gray values)")
        self.augment_check.setChecked(True)
        self.augment_check.setToolTip("Random deformations of every training tile: essential with few annotations.")
        form.addRow(self.augment_check)
        self.device_combo = DeviceCombo()
        form.addRow("device", self.device_combo)
        self.preview_spin = QSpinBox()
        self.preview_spin.setRange(1, 600)
        self.preview_spin.setValue(5)
        self.preview_spin.setSuffix(" s")
        self.preview_spin.setToolTip("Predict the visible slice (or, on a large image, the part in view) into the "
                                     "preview layer about every N seconds; the first comes about 2 s after Start. "
                                     "Previews are spaced out when they would take more than 5 % of the time.")
        form.addRow("preview every", self.preview_spin)
        self.weight_check = QCheckBox("show weight map")
        self.weight_check.setToolTip(
            "Add a layer with the loss weight of each annotated pixel of the visible slice: class "
            "balance plus the border term that separates touching cells."
        )
        self.uncertainty_check = QCheckBox("show uncertainty")
        self.uncertainty_check.setToolTip(
            "Add a layer with the entropy of the prediction (bright = unsure): annotate there next."
        )
        checks = QHBoxLayout()
        checks.addWidget(self.weight_check)
        checks.addWidget(self.uncertainty_check)
        form.addRow(checks)

    def train_config(self, pairs, model=None, checkpoint_dir: Callable[[], str | None] = lambda: None):
        """The :class:`napari_unet.TrainConfig` of the form for the ``(image, labels)`` layer
        ``pairs``: a new network of the chosen preset, or the architecture of ``model`` (continued);
        ``checkpoint_dir()`` gives the run's checkpoint folder. A 3D network gets the voxel size
        (z, y, x) of the layers' scale, a new one poolings adapted to it. ValueError without a
        budget, or for a 3D network on images that are not z-stacks."""
        from ...config import AugmentConfig, TrainConfig, anisotropic_pools, model_preset

        iterations = self.iterations_spin.value() or None
        seconds = self.time_spin.value()
        time_limit = float(seconds) if seconds > 0 else None
        if iterations is None and time_limit is None:
            raise ValueError("set an iteration count or a time limit: training needs a budget")
        mode = self.mode_combo.currentData()
        kwargs = dict(
            mode=mode,
            preset=self.preset_combo.currentData(),
            iterations=iterations,
            time_limit_s=time_limit,
            batch_size=self.batch_spin.value() or None,
            augment=AugmentConfig(enabled=self.augment_check.isChecked()),
            device=self.device_combo.device(),
            preview_every_s=float(self.preview_spin.value()),
            checkpoint_dir=checkpoint_dir(),
        )
        if model is None:
            in_channels, n_classes = channels_and_classes(pairs, mode)
            kwargs["model"] = model_preset(kwargs["preset"], in_channels=in_channels, n_classes=n_classes)
            if n_classes is not None and mode == "classes":
                kwargs["n_classes"] = n_classes
        else:
            kwargs["model"] = model.config  # a continued network keeps its architecture
            if mode == "classes":
                kwargs["n_classes"] = model.config.n_classes
        architecture = kwargs["model"]
        three_d = architecture.spatial_dims == 3
        if three_d:
            check_z_stacks(pairs, architecture.in_channels)
        kwargs["pixel_size"] = common_pixel_size([image for image, _labels in pairs], architecture.in_channels,
                                                 voxels=three_d)
        if three_d and model is None:  # pool Z once the pooled pixels have caught up with the z-step
            voxel = kwargs["pixel_size"] if kwargs["pixel_size"] is not None and len(kwargs["pixel_size"]) == 3 else None
            kwargs["model"] = dataclasses.replace(architecture,
                                                  xy_only_pools=anisotropic_pools(voxel, architecture.depth))
        return TrainConfig(**kwargs)
