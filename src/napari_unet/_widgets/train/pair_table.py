"""The table of image / annotation pairs the Train widget trains on."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QHeaderView, QTableWidget, QTableWidgetItem

from ..shared.layers import FollowsLayersMixin, is_kind, is_output_layer, matching_annotations


class PairTable(FollowsLayersMixin, QTableWidget):
    """Image layers with a check box each and the annotation layer paired with them."""

    def __init__(self, viewer, parent=None):
        super().__init__(0, 2, parent)
        self.viewer = viewer
        self.setHorizontalHeaderLabels(["image", "annotations"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setVisible(False)
        self.setToolTip(
            "Images to train on (checked) and their annotation layers. By default every image that "
            "has an annotation layer ('<image> annotations') is checked."
        )
        self._follow_layers(viewer)
        self.refresh()

    def _state(self) -> dict[str, tuple[bool, str | None]]:
        state = {}
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            combo = self.cellWidget(row, 1)
            if item is None or combo is None:
                continue
            state[item.text()] = (item.checkState() == Qt.CheckState.Checked, combo.currentData())
        return state

    def refresh(self, event=None):
        state = self._state()
        images = [layer for layer in self.viewer.layers if is_kind(layer, "image") and not is_output_layer(layer)]
        labels = [layer for layer in self.viewer.layers if is_kind(layer, "labels")]
        self.setRowCount(len(images))
        for row, image in enumerate(images):
            item = QTableWidgetItem(image.name)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            combo = QComboBox()
            combo.addItem("(none)", None)
            for layer in labels:  # all of them: a wrong shape is explained at Start
                if not is_output_layer(layer):
                    combo.addItem(layer.name, layer.name)
            match = matching_annotations(self.viewer, image)
            default = (match is not None, match.name if match is not None else None)
            checked, chosen = state.get(image.name, default)
            if (chosen is None or chosen not in self.viewer.layers) and match is not None:
                # an annotation layer appeared for this image (e.g. created by Annotate)
                checked, chosen = default
            index = combo.findData(chosen) if chosen is not None else 0
            combo.setCurrentIndex(max(0, index))
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.setItem(row, 0, item)
            self.setCellWidget(row, 1, combo)
        self._fit_height()

    def _fit_height(self):
        """As tall as its rows (1 to 4 visible), no empty space below."""
        rows = min(max(self.rowCount(), 1), 4)
        row_height = self.rowHeight(0) if self.rowCount() else self.verticalHeader().defaultSectionSize()
        self.setFixedHeight(self.horizontalHeader().height() + rows * row_height + 2 * self.frameWidth())

    def pairs(self) -> list[tuple[object, object]]:
        """Checked ``(image layer, annotation layer or None)`` pairs."""
        out = []
        layers = {layer.name: layer for layer in self.viewer.layers}
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            combo = self.cellWidget(row, 1)
            if item is None or item.checkState() != Qt.CheckState.Checked:
                continue
            image = layers.get(item.text())
            labels = layers.get(combo.currentData()) if combo is not None and combo.currentData() else None
            if image is not None:
                out.append((image, labels))
        return out

    def set_checked(self, names) -> None:
        names = set(names)
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)
