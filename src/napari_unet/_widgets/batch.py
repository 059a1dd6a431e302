"""BatchPredictWidget: run the model over every checked image layer (whole stacks).

One worker thread goes through the layers in turn (the Qt-free jobs of :mod:`napari_unet.cluster.batch`),
here or on a dask cluster; each result reaches the viewer (a Labels layer named after its source)
as soon as it is ready, and is optionally written to a folder (TIFF, or OME-Zarr from a cluster).
Existing files are never overwritten without asking.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                            QListWidgetItem, QMessageBox, QPushButton, QVBoxLayout, QWidget)

from ..cluster.batch import batch_job, cluster_batch_job, output_path
from .predict import OUTPUTS, check_model_fits, hide_preview, no_objects_message, preview_as_prediction
from .shared.controls import (CellDiameterSpin, DeviceCombo, FlipsCheck, choice_combo, follow_model_kind,
                              is_volume_model, large_cells_check, select_model_mode, set_bar)
from .shared.layers import (FollowsLayersMixin, PREDICTION_SUFFIX, is_kind, is_output_layer, layer_pixel_size,
                            upsert_layer)
from .shared.model_box import ModelPanel, model_holder
from .shared.notify import notify_error, notify_info, notify_warning, plain_error
from .shared.workers import WorkerWidgetMixin

logger = logging.getLogger(__name__)

# per-layer progress is scaled into this many steps of the total bar
_STEPS = 1000


class BatchPredictWidget(WorkerWidgetMixin, FollowsLayersMixin, QWidget):
    """Predict every checked image layer with the current model (napari dock widget)."""

    JOB_NAME = "Batch prediction"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.holder = model_holder(napari_viewer)
        self._sources: dict[str, object] = {}
        self._n_results = 0
        self._empty: list[str] = []
        self._mode = "instances"

        layout = QVBoxLayout(self)
        self.model_panel = ModelPanel(self.holder, self.load_model)
        self.model_label, self.load_button = self.model_panel.label, self.model_panel.load_button
        layout.addWidget(self.model_panel)

        layout.addWidget(QLabel("<b>Images</b> (checked ones are predicted, whole stacks)"))
        self.layer_list = QListWidget()
        self.layer_list.setToolTip("Every open image layer; new layers are checked.")
        self.layer_list.setMaximumHeight(160)
        layout.addWidget(self.layer_list)
        select = QHBoxLayout()
        all_button = QPushButton("All")
        all_button.clicked.connect(lambda: self._check_all(True))
        none_button = QPushButton("None")
        none_button.clicked.connect(lambda: self._check_all(False))
        select.addWidget(all_button)
        select.addWidget(none_button)
        layout.addLayout(select)

        form = QFormLayout()
        self.output_combo = choice_combo(OUTPUTS)
        form.addRow("output", self.output_combo)
        self.diameter_spin = CellDiameterSpin()
        form.addRow("cell diameter", self.diameter_spin)
        self.three_d_check = QCheckBox("3D objects")
        self.three_d_check.setToolTip("z-stacks: one id per object over all its planes (voxel size from each layer's "
                                      "scale); other images: plane by plane.")
        form.addRow(self.three_d_check)
        self.large_cells_check = large_cells_check()
        form.addRow(self.large_cells_check)
        self.flips_check = FlipsCheck()
        form.addRow(self.flips_check)
        self.device_combo = DeviceCombo()
        form.addRow("device", self.device_combo)
        self.save_check = QCheckBox("save as TIFF to")
        self.save_check.setToolTip("Also write each result to '<folder>/<layer name>_labels.tif'.")
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("folder")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self.choose_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(browse)
        form.addRow(self.save_check, folder_row)
        self.cluster_check = QCheckBox("run on a dask cluster")
        self.cluster_check.setToolTip("Predict block by block on dask workers (docs/cluster.md); results are saved "
                                      "as OME-Zarr '<folder>/<layer name>_prediction.zarr'.")
        self.cluster_edit = QLineEdit("local")
        self.cluster_edit.setPlaceholderText("local, local:4 or tcp://scheduler:8786")
        self.cluster_edit.setToolTip("'local': worker processes on this machine (one per GPU, or per 4 cores); "
                                     "'local:N': N of them; or the address of a running dask scheduler.")
        form.addRow(self.cluster_check, self.cluster_edit)
        layout.addLayout(form)

        self.run_button = self._add_run_buttons(layout, "Predict all checked", self.run)
        self._add_progress(layout, _STEPS)
        layout.addStretch(1)

        self._follow_layers(napari_viewer)
        self.holder.changed.connect(self._on_model_changed)
        self._on_model_changed(self.holder.description)
        self.refresh()
        self._set_running(False)

    # -- layer list -------------------------------------------------------------------------

    def refresh(self, event=None):
        unchecked = {
            self.layer_list.item(i).text()
            for i in range(self.layer_list.count())
            if self.layer_list.item(i).checkState() != Qt.CheckState.Checked
        }
        self.layer_list.clear()
        for layer in self.viewer.layers:
            if not is_kind(layer, "image"):
                continue
            if is_output_layer(layer):
                continue  # our own probability / uncertainty outputs
            item = QListWidgetItem(layer.name)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Unchecked if layer.name in unchecked else Qt.CheckState.Checked)
            self.layer_list.addItem(item)

    def _check_all(self, checked: bool):
        for i in range(self.layer_list.count()):
            self.layer_list.item(i).setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def checked_layers(self) -> list:
        names = [
            self.layer_list.item(i).text()
            for i in range(self.layer_list.count())
            if self.layer_list.item(i).checkState() == Qt.CheckState.Checked
        ]
        return [self.viewer.layers[name] for name in names if name in self.viewer.layers]

    def set_checked(self, names) -> None:
        names = set(names)
        for i in range(self.layer_list.count()):
            item = self.layer_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)

    # -- model / folder ---------------------------------------------------------------------

    def _on_model_changed(self, description: str) -> None:
        select_model_mode(self.output_combo, self.holder.model)
        self.diameter_spin.set_model(self.holder.model)
        follow_model_kind(self.three_d_check, self.holder.model, not self.is_running)  # 3D network: 3D objects

    def choose_folder(self):
        folder = QFileDialog.getExistingDirectory(self, "Save results to", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.save_check.setChecked(True)

    def _confirm_overwrite(self, existing: list[Path]) -> str:
        """"overwrite", "skip" (keep those files, save the others) or "cancel"."""
        names = "\n".join(f"  {p.name}" for p in existing[:10])
        more = f"\n  … and {len(existing) - 10} more" if len(existing) > 10 else ""
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Files exist")
        box.setText(f"{len(existing)} result file(s) exist already:\n{names}{more}\n\nOverwrite them?")
        box.setStandardButtons(
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel
        )
        box.button(QMessageBox.StandardButton.No).setText("Keep them (save the others)")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Yes:
            return "overwrite"
        if answer == QMessageBox.StandardButton.No:
            return "skip"
        return "cancel"

    # -- running ----------------------------------------------------------------------------

    def _set_running(self, running: bool):
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.model_panel.set_running(running, self.holder.model is not None)
        self.layer_list.setEnabled(not running)
        self.cluster_check.setEnabled(not running)
        follow_model_kind(self.three_d_check, self.holder.model, not running)
        self.large_cells_check.setEnabled(not running)
        self.flips_check.setEnabled(not running)
        self.cluster_edit.setEnabled(not running)

    def run(self):
        """Predict every checked layer in one worker; results become Labels layers."""
        if self.is_running:
            return
        model = self.holder.model
        if model is None:
            notify_error("No model yet: train one (Train widget) or load a .unet file.")
            return
        layers = self.checked_layers()
        if not layers:
            notify_error("No image layer is checked: open images and check them in the list.")
            return
        items, problems = [], []
        for layer in layers:
            try:
                axes = check_model_fits(model, layer)
            except ValueError as exc:
                problems.append(plain_error(exc))
                continue
            items.append([layer.name, layer.data, axes, None])
        if problems:
            notify_error("Cannot predict: " + "; ".join(problems))
            return
        if self.save_check.isChecked():
            folder = self.folder_edit.text().strip()
            if not folder:
                notify_error("Choose a folder to save to (or uncheck 'save as TIFF').")
                return
            folder = Path(folder).expanduser()
            if folder.exists() and not folder.is_dir():
                notify_error(f"{folder} is a file, not a folder.")
                return
            suffix = "_prediction.zarr" if self.cluster_check.isChecked() else "_labels.tif"
            paths = [output_path(folder, item[0], suffix) for item in items]
            if len(set(paths)) != len(paths):
                notify_error("Two checked layers would be saved to the same file name; rename one of them.")
                return
            existing = [p for p in paths if p.exists()]
            decision = self._confirm_overwrite(existing) if existing else "overwrite"
            if decision == "cancel":
                return
            for item, path in zip(items, paths):
                item[3] = None if (decision == "skip" and path.exists()) else path
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                notify_error(f"Cannot create the folder {folder}: {plain_error(exc)}")
                return
        self._sources = {layer.name: layer for layer in layers}
        self._n_results = 0
        self._saved: list[Path] = []
        self._empty: list[str] = []  # images where no object was found
        self._mode = self.output_combo.currentData()
        self.progress.setValue(0)
        self.progress.setFormat(f"0 of {len(items)} images  %p%")
        self.status_label.setText(f"Predicting {len(items)} image(s)…")
        self._total = len(items)
        job = self._job(model, [tuple(item) for item in items])
        if job is None:
            return
        self._start_worker(
            job,
            yielded=self._on_yielded,
            returned=self._on_returned,
            aborted=self._on_aborted,
        )

    def _job(self, model, items):
        mode, device, diameter = self.output_combo.currentData(), self.device_combo.device(), self.diameter_spin.diameter()
        in_channels = int(model.config.in_channels)
        spaces = [layer_pixel_size(self._sources[item[0]], in_channels) for item in items]
        if not self.cluster_check.isChecked():
            # a 3D network's objects: of the layers' voxel sizes, or of its own where one is unknown
            three_d = self.three_d_check.isChecked() and (all(spaces) or not is_volume_model(model))
            return batch_job(model, items, mode, device=device, cell_diameter=diameter, spaces=spaces,
                             three_d=three_d, large_cells=self.large_cells_check.isChecked(),
                             tta=self.flips_check.tta())
        if self.three_d_check.isChecked():
            notify_error("3D objects are not available on a cluster yet (it labels plane by plane): "
                         + ("a 3D network predicts here only." if is_volume_model(model) else "uncheck one of them."))
            return None
        address = self.cluster_edit.text().strip() or "local"
        if importlib.util.find_spec("distributed") is None:
            notify_error('Running on a cluster needs dask.distributed: pip install "napari-scribble-unet[cluster]"')
            return None
        self.status_label.setText(f"Predicting {len(items)} image(s) on {address}…"
                                  + (" (without the half-scale pass for large cells: it runs in local prediction only)"
                                     if self.large_cells_check.isChecked() else ""))
        return cluster_batch_job(model, items, mode, cluster=address, device=device, cell_diameter=diameter,
                                 spaces=spaces, tta=self.flips_check.tta())

    def _on_yielded(self, value):
        kind, payload = value
        if kind == "progress":
            set_bar(self.progress, int(_STEPS * payload))
            return
        name, labels, path, error = payload
        self._n_results += 1
        set_bar(self.progress, text=f"{self._n_results} of {self._total} images  %p%")
        source = self._sources.get(name)
        if source is not None and source in self.viewer.layers:
            if labels is not None:
                preview_as_prediction(self.viewer, source, labels.shape)
            upsert_layer(self.viewer, name + PREDICTION_SUFFIX, "labels", labels, source_layer=source)
            hide_preview(self.viewer, source)
        if labels is not None and self._mode == "instances" and not np.any(labels):
            self._empty.append(name)
        if error:
            notify_warning(f"{name}: the result was not saved: {plain_error(error)}")
        elif path is not None:
            self._saved.append(path)

    def _on_returned(self, n):
        text = f"Predicted {self._n_results} image(s)."
        if self._saved:
            text += f" Saved {len(self._saved)} file(s) to {self._saved[0].parent}."
        self.status_label.setText(text)
        self.progress.setValue(_STEPS)
        self.progress.setFormat("done")
        notify_info(text)
        if self._empty:
            notify_warning(no_objects_message(", ".join(self._empty)))

    def _failure_message(self, exc) -> str:
        return f"Batch prediction failed after {self._n_results} image(s): {plain_error(exc)}"

    def _on_aborted(self):
        self.progress.setFormat("cancelled")
        self.status_label.setText(f"Cancelled after {self._n_results} image(s).")
