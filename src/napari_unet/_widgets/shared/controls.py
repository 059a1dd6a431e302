"""Small controls shared by the widgets: the device combo box, the cell-diameter spin box,
choice combo boxes, the status line."""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable

from qtpy.QtCore import QRect, QSize, Qt
from qtpy.QtGui import QPainter
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QProgressBar, QSizePolicy, QWidget

logger = logging.getLogger(__name__)

# what the annotations mean / what a prediction outputs: (value, label) for the combo boxes
MODE_CHOICES = [("instances", "cells (instances)"), ("classes", "classes")]


def available_devices() -> list[tuple[str, str]]:
    """``[(value, label), ...]`` for the device picker: auto first, then what this machine has."""
    import torch

    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            value = "cuda" if i == 0 else f"cuda:{i}"
            devices.append((value, f"CUDA: {torch.cuda.get_device_name(i)}"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps", "MPS (Apple GPU)"))
    devices.append(("cpu", f"CPU ({os.cpu_count() or '?'} cores, {torch.get_num_threads()} threads)"))
    auto_label = devices[0][1]
    return [("auto", f"auto: {auto_label}"), *devices]


def device_value(value: str | None) -> str | None:
    """The picker value -> the core's device argument (None = the fastest available)."""
    return None if value in (None, "", "auto") else value


def device_label(device) -> str:
    """A torch device -> ``"CUDA: NVIDIA H100"``, ``"MPS"`` or ``"CPU"``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "MPS (Apple GPU)"
    return "CPU"


def free_device_memory() -> None:
    """Return cached GPU memory to the driver (after training or prediction). Nothing to do on a
    CPU: the full garbage collection it needs costs the event loop ~0.1 s in a napari session."""
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    mps = getattr(torch, "mps", None)
    mps = (mps if mps is not None and getattr(torch.backends, "mps", None) is not None
           and torch.backends.mps.is_available() and hasattr(mps, "empty_cache") else None)
    if not cuda and mps is None:
        return
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    if mps is not None:
        mps.empty_cache()


class CellDiameterSpin(QDoubleSpinBox):
    """Typical cell diameter for the split of touching cells; 0 = the model's own figure."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setRange(0.0, 10000.0)
        self.setDecimals(1)
        self.setSuffix(" px")
        self.setSpecialValueText("from the model")
        self.setToolTip(
            "Typical cell diameter in pixels (cells output only). Touching cells are split at a neck\n"
            "where the width drops by more than 0.2 x diameter (less for cells under 25 px); pieces\n"
            "that together are under half a typical cell stay one cell (e.g. a dividing one), and\n"
            "objects smaller than a tenth of a typical cell are dropped. 'from the model': the median\n"
            "diameter of the cells painted for training. Raise it if cells come out cut in two,\n"
            "lower it if touching cells stay merged."
        )

    def set_model(self, model) -> None:
        diameter = (getattr(model, "metadata", None) or {}).get("cell_diameter")
        self.setSpecialValueText(f"from the model ({diameter:.1f} px)" if diameter else "from the model")

    def diameter(self) -> float | None:
        """The diameter chosen, or None for the model's own."""
        return float(self.value()) or None


class DeviceCombo(QComboBox):
    """Device picker filled lazily (torch is imported the first time it is shown or read)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._filled = False
        self.setToolTip(
            "Where the network runs. auto picks CUDA, then MPS (Apple), then the CPU."
        )
        self.addItem("auto", "auto")

    def fill(self):
        if self._filled:
            return
        self._filled = True
        self.clear()
        for value, label in available_devices():
            self.addItem(label, value)

    def showEvent(self, event):  # noqa: N802 - Qt API
        self.fill()
        super().showEvent(event)

    def device(self) -> str | None:
        self.fill()
        return device_value(self.currentData())


# ------------------------------------------------------------------------------------------
# small Qt helpers


def choice_combo(choices: Iterable[tuple[Any, str]], tooltip: str | None = None) -> QComboBox:
    """A combo box of ``(value, label)`` choices (the value is the item data)."""
    combo = QComboBox()
    for value, label in choices:
        combo.addItem(label, value)
    if tooltip is not None:
        combo.setToolTip(tooltip)
    return combo


def select_data(combo: QComboBox, value) -> None:
    """Select the item of ``combo`` whose data is ``value`` (nothing happens when there is none)."""
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)


def select_model_mode(combo: QComboBox, model) -> None:
    """Select the output / annotation mode ``model`` was trained for, when it says so."""
    if model is not None:
        select_data(combo, (model.metadata or {}).get("mode"))


class FlipsCheck(QCheckBox):
    """The switch of the flipped views (test-time augmentation, :mod:`napari_unet.predict.engine`)."""

    def __init__(self, parent=None):
        from ...predict.views import PLUGIN_TTA, describe_tta

        super().__init__(f"average flipped views ({describe_tta(PLUGIN_TTA)}: steadier)", parent)
        self.setChecked(True)
        self.setToolTip(
            "Predict every tile flipped left-right as well (and, on an image where the two disagree, up-down too)\nand average "
            "the probabilities: steadier cells on noisy images, at two to four times the network's time.\n"
            "Off: the network's output once.")

    def tta(self) -> int | str:
        """The ``tta`` of :func:`~napari_unet.predict_tiled` for the current state."""
        from ...predict.views import PLUGIN_TTA

        return PLUGIN_TTA if self.isChecked() else 1


def large_cells_check() -> QCheckBox:
    """The switch of the half-scale pass (:mod:`napari_unet.labels.large_cells`), on by default."""
    check = QCheckBox("also find cells larger than the painted ones")
    check.setChecked(True)
    check.setToolTip(
        "Cells output: predict each image a second time at half size (a third to a half more time) and take from it\n"
        "the cells more than twice the typical painted diameter that the full size finds only as rings or\n"
        "fragments. Cells of the painted size keep their labels. Off: the full-size prediction only.\n"
        "Not with 3D objects, nor on a cluster.")
    return check


def is_volume_model(model) -> bool:
    """Whether ``model`` is a 3D network (it predicts z-stacks, into 3D objects)."""
    return model is not None and int(getattr(model.config, "spatial_dims", 2)) == 3


def follow_model_kind(check: QCheckBox, model, enabled: bool = True) -> None:
    """The "3D objects" ``check`` for ``model``: a 3D network always makes 3D objects (shown
    checked and disabled; the user's own choice comes back with a 2D network), else the check
    is enabled as ``enabled`` says."""
    volume = is_volume_model(model)
    saved = getattr(check, "user_choice", None)
    if volume and saved is None:
        check.user_choice = check.isChecked()
        check.setChecked(True)
    elif not volume and saved is not None:
        check.setChecked(saved)
        check.user_choice = None
    check.setEnabled(enabled and not volume)


def _flag(value) -> int:
    return int(getattr(value, "value", value))  # PyQt6 enums carry .value, PyQt5's are ints


_WRAP_FLAGS = _flag(Qt.TextFlag.TextWordWrap) | _flag(Qt.AlignmentFlag.AlignLeft) | _flag(Qt.AlignmentFlag.AlignTop)


def set_bar(bar: QProgressBar, value: int | None = None, text: str | None = None) -> None:
    """Set a progress ``bar``'s ``value`` and / or ``text``, repainted with the rest of the window
    at the next turn of the event loop.

    ``QProgressBar.setValue`` repaints at once, which composes the whole napari window twice (for
    the bar, then for what else changed): tens of milliseconds each under software OpenGL."""
    bar.setUpdatesEnabled(False)
    if text is not None:
        bar.setFormat(text)
    if value is not None:
        bar.setValue(value)
    bar.setUpdatesEnabled(True)  # asks for a repaint at the next composition


class StatusLine(QWidget):
    """A word-wrapped line of text (``setText`` / ``text`` as a QLabel's) that asks its layout for
    a new height only when its number of lines changes.

    A QLabel asks for a new layout at every ``setText``; a running job changes its status every
    second, and each layout pass repaints large parts of the napari window (two extra window
    compositions, tens of milliseconds each under software OpenGL)."""

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self._text = text
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name
        text = str(text)
        if text == self._text:
            return
        self._text = text
        if self.heightForWidth(max(1, self.width())) != self.height():
            self.updateGeometry()
        self.update()

    def _text_height(self, width: int) -> int:
        if not self._text:
            return 0
        return self.fontMetrics().boundingRect(QRect(0, 0, max(1, width), 100000), _WRAP_FLAGS, self._text).height()

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt API
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt API
        return max(self.fontMetrics().lineSpacing(), self._text_height(width))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(100, self.heightForWidth(max(1, self.width())))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(0, self.fontMetrics().lineSpacing())

    def resizeEvent(self, event):  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if self.heightForWidth(event.size().width()) != event.size().height():
            self.updateGeometry()

    def paintEvent(self, event):  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(self.rect(), _WRAP_FLAGS, self._text)
        painter.end()
