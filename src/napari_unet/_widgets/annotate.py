"""AnnotateWidget: create the annotation layer of an image and paint it by the convention.

0 = not annotated (ignored by training), 1 = background, 2, 3, ... = one id per cell.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..annotations.summary import annotation_summary
from .shared.layers import (ANNOTATIONS_SUFFIX, LayerCombo, disconnect_all, layer_annotation_problems,
                            matching_annotations, spatial_shape)
from .shared.notify import notify_error

CONVENTION = (
    "<b>How to annotate</b><br>"
    "Paint a few strokes, not whole images:<br>"
    "&nbsp;• <b>0</b> (transparent) = not annotated: ignored by training<br>"
    "&nbsp;• <b>1</b> = background<br>"
    "&nbsp;• <b>2, 3, …</b> = one id per cell: touching cells get different ids<br>"
    "Paint about ten <b>whole</b> cells (touching ones first), edge included: the pixels just "
    "outside a painted cell are learnt as background, so never paint half a cell. Add a few quick "
    "background strokes; unpainted pixels cost nothing."
)


class AnnotateWidget(QWidget):
    """Create and paint the annotation Labels layer of an image (napari dock widget)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._connections: list = []
        self._labels_layer = None

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.image_combo = LayerCombo(napari_viewer, "image", self)
        self.image_combo.setToolTip("The image to annotate.")
        form.addRow("image", self.image_combo)
        layout.addLayout(form)

        self.create_button = QPushButton("Create annotation layer")
        self.create_button.setToolTip(
            "Add an empty Labels layer '<image> annotations' of the image's shape, scale and "
            "position, selected and in paint mode (or select it when it exists)."
        )
        self.create_button.clicked.connect(self.create_annotation_layer)
        layout.addWidget(self.create_button)

        explanation = QLabel(CONVENTION)
        explanation.setWordWrap(True)
        layout.addWidget(explanation)

        buttons = QHBoxLayout()
        self.background_button = QPushButton("Paint background")
        self.background_button.setToolTip("Paint with label 1 (background).")
        self.background_button.clicked.connect(self.paint_background)
        self.cell_button = QPushButton("New cell")
        self.cell_button.setToolTip("Paint with the next free id (one id per cell).")
        self.cell_button.clicked.connect(self.new_cell)
        self.erase_button = QPushButton("Erase")
        self.erase_button.setToolTip("Erase back to 0 (not annotated).")
        self.erase_button.clicked.connect(self.erase)
        for button in (self.background_button, self.cell_button, self.erase_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self.stats_label = QLabel()
        self.stats_label.setWordWrap(True)
        layout.addWidget(self.stats_label)
        self.warning_label = QLabel()
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet("color: #e0a030;")
        layout.addWidget(self.warning_label)
        layout.addStretch(1)

        # recounting a big stack on every stroke would be wasteful: coalesce
        self._stats_timer = QTimer(self)
        self._stats_timer.setSingleShot(True)
        self._stats_timer.setInterval(250)
        self._stats_timer.timeout.connect(self.update_stats)

        self.image_combo.layer_changed.connect(self._on_image_changed)
        napari_viewer.layers.events.inserted.connect(self._on_layers_changed)
        napari_viewer.layers.events.removed.connect(self._on_layers_changed)
        self._on_image_changed(self.image_combo.layer())

    # -- layers ---------------------------------------------------------------------------

    def image_layer(self):
        return self.image_combo.layer()

    def annotation_layer(self):
        return matching_annotations(self.viewer, self.image_layer())

    def _on_layers_changed(self, event=None):
        self._on_image_changed(self.image_layer())

    def _on_image_changed(self, image_layer):
        labels = matching_annotations(self.viewer, image_layer)
        if labels != self._labels_layer:
            disconnect_all(self._connections)
            self._connections = []
            self._labels_layer = labels
            if labels is not None:
                for emitter in (labels.events.paint, labels.events.data):
                    emitter.connect(self._schedule_stats)
                    self._connections.append((emitter, self._schedule_stats))
        has_layer = labels is not None
        self.create_button.setText("Select annotation layer" if has_layer else "Create annotation layer")
        for button in (self.background_button, self.cell_button, self.erase_button):
            button.setEnabled(has_layer)
        self.update_stats()

    def _schedule_stats(self, event=None):
        self._stats_timer.start()

    def create_annotation_layer(self):
        """Create (or select) the annotation layer of the chosen image, in paint mode."""
        image = self.image_layer()
        if image is None:
            notify_error("Open or select an image layer first: there is nothing to annotate.")
            return None
        labels = self.annotation_layer()
        if labels is None:
            shape = spatial_shape(image)
            n = len(shape)
            labels = self.viewer.add_labels(
                np.zeros(shape, dtype=np.uint16),
                name=image.name + ANNOTATIONS_SUFFIX,
                scale=tuple(image.scale)[-n:],
                translate=tuple(image.translate)[-n:],
                metadata={"napari_unet_annotations_of": image.name},
            )
            labels.brush_size = max(3, min(shape[-2:]) // 64)
            labels.opacity = 0.6
        self._on_image_changed(image)
        self._activate(labels)
        labels.selected_label = 1 if labels.selected_label < 1 else labels.selected_label
        labels.mode = "paint"
        return labels

    def _activate(self, labels):
        self.viewer.layers.selection.active = labels
        labels.visible = True

    def _require_labels(self):
        labels = self.annotation_layer()
        if labels is None:
            labels = self.create_annotation_layer()
        return labels

    def paint_background(self):
        labels = self._require_labels()
        if labels is None:
            return
        self._activate(labels)
        labels.selected_label = 1
        labels.mode = "paint"

    def next_cell_id(self, labels=None) -> int:
        labels = labels or self.annotation_layer()
        if labels is None:
            return 2
        current = int(np.max(labels.data)) if labels.data.size else 0
        return max(2, current + 1)

    def new_cell(self):
        labels = self._require_labels()
        if labels is None:
            return
        self._activate(labels)
        labels.selected_label = self.next_cell_id(labels)
        labels.mode = "paint"

    def erase(self):
        labels = self._require_labels()
        if labels is None:
            return
        self._activate(labels)
        labels.mode = "erase"

    # -- statistics and warnings ------------------------------------------------------------

    def update_stats(self):
        image = self.image_layer()
        labels = self.annotation_layer()
        if image is None:
            self.stats_label.setText("No image layer: open an image (File > Open, or File > Open Sample).")
            self.warning_label.setText("")
            return
        if labels is None:
            self.stats_label.setText(f"{image.name!r} has no annotation layer yet.")
            self.warning_label.setText("")
            return
        errors, warnings_ = layer_annotation_problems(image, labels)
        if tuple(labels.data.shape) == spatial_shape(image):
            s = annotation_summary(labels.data)
            fraction = 100.0 * s["pixels"] / max(1, s["total_pixels"])
            text = (
                f"Annotated: {s['pixels']:,} pixels ({fraction:.2g} %), {s['background']:,} background, "
                f"{s['objects']} cell(s)"
            )
            if s["total_slices"] > 1:
                text += f", {s['slices']} of {s['total_slices']} slices"
            self.stats_label.setText(text + ".")
        else:
            self.stats_label.setText("")
        messages = [f"⚠ {m}" for m in errors + warnings_]
        self.warning_label.setText("<br>".join(messages))

    def closeEvent(self, event):  # noqa: N802 - Qt API
        disconnect_all(self._connections)
        self._connections = []
        super().closeEvent(event)
