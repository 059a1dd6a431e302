"""ModelPanel: the "Model" box of the Train, Predict and Batch widgets.

It shows what the viewer's current model is (its :class:`.model_state.ModelHolder` description,
kept up to date) and holds the buttons of its files: *Load model…* in every widget, *Save model…*
and *Export bioimage.io…* where the widget passes them (the Train widget).
"""

from __future__ import annotations

from typing import Callable

from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

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
