"""The "Model" box of the Train, Predict and Batch widgets: the model shared by the widgets of one
viewer (:class:`ModelHolder`), loading / choosing model files, and :class:`ModelPanel`, the box
that shows the current model and holds the buttons of its files (*Load model…* in every widget,
*Save model…* and *Export bioimage.io…* where the widget passes them: the Train widget)."""

from __future__ import annotations

import logging
import weakref
from typing import Callable

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from .notify import notify_error, notify_info, plain_error

logger = logging.getLogger(__name__)


class ModelHolder(QObject):
    """The current model of one viewer, shared by the Train, Predict and Batch widgets.

    ``changed`` is emitted with a short description when a model is trained or loaded.
    The held model is never the one being trained (the train widget hands over a copy),
    so predicting while training is safe.
    """

    changed = Signal(str)

    def __init__(self):
        super().__init__()
        self.model = None
        self.description = "no model yet: train one or load a .unet file"

    def set_model(self, model, description: str) -> None:
        self.model = model
        self.description = description
        self.changed.emit(description)


_HOLDERS: dict[int, ModelHolder] = {}


def model_holder(viewer) -> ModelHolder:
    """The :class:`ModelHolder` of ``viewer`` (created on first use, dropped with the viewer)."""
    # plugin widgets get napari's PublicOnlyProxy of the viewer: key on the viewer itself
    viewer = getattr(viewer, "__wrapped__", viewer)
    key = id(viewer)
    holder = _HOLDERS.get(key)
    if holder is None:
        holder = _HOLDERS[key] = ModelHolder()
        try:
            weakref.finalize(viewer, _HOLDERS.pop, key, None)
        except TypeError:  # not weak-referenceable: keep it for the session
            pass
    return holder


def describe_model(model, origin: str) -> str:
    meta = getattr(model, "metadata", {}) or {}
    cfg = model.config
    parts = [origin, f"depth {cfg.depth}, {cfg.base_channels} base channels"]
    mode = meta.get("mode")
    if mode:
        parts.append(str(mode))
    training = meta.get("training") or {}
    iterations = training.get("iterations") if isinstance(training, dict) else None
    if iterations:
        kept = training.get("kept_iteration")
        if kept is not None and int(kept) != int(iterations):
            parts.append(f"weights of iteration {kept} of {iterations}")
        else:
            parts.append(f"{iterations} iterations")
    return "; ".join(parts)


def ask_model_path(parent, save: bool = False) -> str | None:
    """A file dialog for a ``.unet`` model (tests patch ``QFileDialog``)."""
    from qtpy.QtWidgets import QFileDialog

    if save:
        path, _ = QFileDialog.getSaveFileName(parent, "Save model", "model.unet", "U-Net model (*.unet)")
    else:
        path, _ = QFileDialog.getOpenFileName(parent, "Load model", "", "U-Net model (*.unet);;All files (*)")
    return path or None


def ask_export_path(parent) -> str | None:
    """A save dialog for a bioimage.io package (tests patch ``QFileDialog``); it asks before replacing a file."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(parent, "Export to bioimage.io", "model.bioimageio.zip",
                                          "bioimage.io model package (*.zip)")
    return path or None


def load_model_into(holder: ModelHolder, path, device=None):
    """Load the model file ``path`` into ``holder``; a notification (and None) on failure."""
    from pathlib import Path

    from ...model.files import load_model

    try:
        model = load_model(path, device=device)
    except (OSError, ValueError, RuntimeError) as exc:
        notify_error(f"Could not load the model {path}: {plain_error(exc)}")
        return None
    holder.set_model(model, describe_model(model, f"loaded from {Path(path).name}"))
    notify_info(f"Model loaded from {path}")
    return model


def save_model_file(model, path):
    """Save ``model`` to ``path`` (``.unet`` added when missing; a file there is replaced: the save
    dialog asked); the path written, or None after an error notification."""
    from pathlib import Path

    from ...model.files import save_model

    path = Path(path)
    if path.suffix != ".unet":
        path = path.with_suffix(".unet")
    try:
        save_model(model, path, overwrite=True)
    except (OSError, ValueError) as exc:
        notify_error(f"Could not save the model to {path}: {plain_error(exc)}")
        return None
    notify_info(f"Model saved to {path}")
    return path


def export_model_file(model, path, *, sample=None, overwrite: bool = False):
    """Export ``model`` as a bioimage.io package to ``path`` (``.zip`` added when missing) under a
    wait cursor; the path written, or None after an error notification."""
    from pathlib import Path

    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from ...export.bioimageio import export_bioimageio

    path = Path(path)
    if not path.name.endswith(".zip"):
        path = path.with_name(path.name + ".zip")
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        export_bioimageio(model, path, sample=sample, overwrite=overwrite)
    except FileExistsError:
        notify_error(f"{path} exists: choose another name (nothing was overwritten).")
        return None
    except (OSError, ValueError, RuntimeError) as exc:
        notify_error(f"Could not export the model to {path}: {plain_error(exc)}")
        return None
    finally:
        QApplication.restoreOverrideCursor()
    notify_info(f"bioimage.io package written to {path}")
    return path


LOAD_TOOLTIP = "Load a .unet model file (or train one in the Train widget)."
SAVE_TOOLTIP = "Save the model (weights, architecture, normalization, classes) to a .unet file."
EXPORT_TOOLTIP = ("Export the model as a bioimage.io package (zip) for ilastik, deepImageJ (Fiji), QuPath and the "
                  "bioimage.io model zoo; the visible plane of the first training image becomes its test image.")


def _button(text: str, tooltip: str, clicked: Callable) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tooltip)
    button.clicked.connect(clicked)
    return button


class ModelPanel(QGroupBox):
    """The viewer's model and its file buttons, one box shared by the Train, Predict and Batch widgets.

    ``load`` (and ``save``, ``export`` when given) run when their button is clicked; the buttons
    are ``load_button``, ``save_button`` and ``export_button`` (None when not given), the
    description is ``label``.
    """

    def __init__(self, holder, load: Callable, *, load_tooltip: str = LOAD_TOOLTIP, save: Callable | None = None,
                 export: Callable | None = None, parent=None):
        super().__init__("Model", parent)
        layout = QVBoxLayout(self)
        self.label = QLabel(holder.description)
        self.label.setWordWrap(True)
        layout.addWidget(self.label)
        self.load_button = _button("Load model…", load_tooltip, load)
        self.save_button = self.export_button = None
        if save is None:
            layout.addWidget(self.load_button)
        else:
            self.save_button = _button("Save model…", SAVE_TOOLTIP, save)
            row = QHBoxLayout()
            row.addWidget(self.save_button)
            row.addWidget(self.load_button)
            layout.addLayout(row)
        if export is not None:
            self.export_button = _button("Export bioimage.io…", EXPORT_TOOLTIP, export)
            layout.addWidget(self.export_button)
        holder.changed.connect(self.label.setText)

    def set_running(self, running: bool, has_model: bool) -> None:
        """Enable the buttons that may act now: no loading or export while a job runs."""
        self.load_button.setEnabled(not running)
        if self.save_button is not None:
            self.save_button.setEnabled(has_model)
        if self.export_button is not None:
            self.export_button.setEnabled(has_model and not running)
