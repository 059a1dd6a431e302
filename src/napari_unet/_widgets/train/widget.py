"""TrainWidget: train a U-Net on painted annotations, with a live preview of the visible slice.

The training runs in a napari thread worker (a generator over the core's ``Trainer.run()``);
everything that touches layers happens on the main thread, in the ``yielded`` callbacks. While
it trains, the user keeps painting: painted annotations are handed to the trainer
(``Trainer.set_annotations``) every few iterations.
"""

from __future__ import annotations

import copy
import logging
import threading
import time

import numpy as np
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...common.axes import channels_last_to_first
from ...common.progress import format_seconds
from ...model.metadata import undertrained_warning
from ...training.job import TrainJob
from ..shared.controls import device_label, select_model_mode
from ..shared.layers import (current_plane_index, image_axes, image_plane, is_kind, layer_annotation_problems,
                             visible_box)
from ..shared.model_box import (ModelPanel, ask_export_path, ask_model_path, describe_model, export_model_file,
                                model_holder, save_model_file)
from ..shared.notify import notify_error, notify_info, notify_warning, plain_error
from ..shared.workers import WorkerWidgetMixin, start_preloading
from .annotation_sync import AnnotationSync
from .loss_plot import LossPlot
from .pair_table import PairTable
from .progress import TrainProgressView
from .settings import TrainSettings

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# the widget


class TrainWidget(WorkerWidgetMixin, QWidget):
    """Train a U-Net on the painted annotations of one or more images (napari dock widget)."""

    JOB_NAME = "Training"

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.holder = model_holder(napari_viewer)
        self.job: TrainJob | None = None
        self._pairs: list = []
        self.annotation_sync = AnnotationSync()
        self._started_at = 0.0
        self._view_checked_at = 0.0

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Train on</b> (image → annotations)"))
        self.pair_table = PairTable(napari_viewer, self)
        layout.addWidget(self.pair_table)

        self.settings = TrainSettings(self)
        layout.addWidget(self.settings)
        # the controls, by the names scripts and tests use
        for name in TrainSettings.CONTROLS:
            setattr(self, name, getattr(self.settings, name))

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train a new network from scratch on the checked images.")
        self.start_button.clicked.connect(self.start)
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Train further from the current model (trained or loaded).")
        self.continue_button.clicked.connect(lambda: self.start(continue_training=True))
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop training (within about a second), keeping the best model so far.")
        self.stop_button.clicked.connect(self.stop)
        for button in (self.start_button, self.continue_button, self.stop_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self._add_progress(layout, 1)
        self.loss_plot = LossPlot()
        layout.addWidget(self.loss_plot)
        self.view = TrainProgressView(napari_viewer, self.progress, self.status_label, self.loss_plot)

        self.model_panel = ModelPanel(
            self.holder, self.load_model, save=self.save_model, export=self.export_bioimageio,
            load_tooltip="Load a .unet model file (to predict with, or to continue training).")
        self.model_label, self.load_button = self.model_panel.label, self.model_panel.load_button
        self.save_button, self.export_button = self.model_panel.save_button, self.model_panel.export_button
        layout.addWidget(self.model_panel)
        layout.addStretch(1)

        self.holder.changed.connect(self._on_model_changed)
        napari_viewer.dims.events.current_step.connect(self._on_view_changed)
        napari_viewer.layers.selection.events.active.connect(self._on_view_changed)
        self._set_running(False)
        start_preloading()

    # -- state ------------------------------------------------------------------------------

    def _set_running(self, running: bool) -> None:
        has_model = self.holder.model is not None
        self.start_button.setEnabled(not running)
        self.continue_button.setEnabled(not running and has_model)
        self.stop_button.setEnabled(running)
        self.model_panel.set_running(running, has_model)
        for widget in (self.pair_table, self.mode_combo, self.preset_combo, self.batch_spin,
                       self.augment_check, self.device_combo):
            widget.setEnabled(not running)

    def _on_model_changed(self, description: str) -> None:
        self._set_running(self.is_running)

    def train_config(self, continue_training: bool = False, model=None):
        """The TrainConfig of the settings for the pairs being trained (``model``: the one continued)."""
        return self.settings.train_config(self._pairs, model, checkpoint_dir=self._checkpoint_dir)

    def _checkpoint_dir(self) -> str | None:
        """A fresh checkpoint folder for this run (None, with a warning, if none can be made)."""
        from ...training.checkpoints import checkpoint_run_dir

        try:
            return str(checkpoint_run_dir())
        except OSError as exc:
            notify_warning(f"Training without checkpoints (cannot create the checkpoint folder: {plain_error(exc)})")
            return None

    # -- checks -----------------------------------------------------------------------------

    def check_inputs(self) -> list[tuple[object, object]] | None:
        """The checked pairs when they can train, else None (after a notification)."""
        pairs = self.pair_table.pairs()
        if not pairs:
            if not any(is_kind(layer, "image") for layer in self.viewer.layers):
                notify_error("No image layer: open an image and annotate it (Annotate widget) before training.")
            else:
                notify_error("Check at least one image (with an annotation layer) in the 'Train on' list.")
            return None
        mode = self.mode_combo.currentData()
        errors, warnings_ = [], []
        for image, labels in pairs:
            e, w = layer_annotation_problems(image, labels, mode)
            errors += e
            warnings_ += w
        if errors:
            notify_error("Cannot train: " + " ".join(errors))
            return None
        for message in warnings_:
            notify_warning(message)
        return pairs

    # -- actions ----------------------------------------------------------------------------

    def start(self, continue_training: bool = False):
        """Start training (a fresh network, or the current model when ``continue_training``)."""
        if self.is_running:
            return
        pairs = self.check_inputs()
        if pairs is None:
            return
        self._pairs = pairs
        model = None
        if continue_training:
            if self.holder.model is None:
                notify_error("There is no model to continue from: press Start, or load a model.")
                return
            # train a copy: the held model stays usable for prediction meanwhile
            model = copy.deepcopy(self.holder.model)
        try:
            config = self.train_config(continue_training, model)
            if model is not None:
                self._check_model_fits(model, config)
            images, axes = [], []
            for image, _ in pairs:
                a = image_axes(image, (model.config.in_channels if model is not None else config.model.in_channels))
                data, a = channels_last_to_first(image.data, a) if a.endswith("YXC") else (image.data, a)
                images.append(data)
                axes.append(a)
            annotations = [np.array(labels.data, copy=True) for _, labels in pairs]
        except (ValueError, TypeError) as exc:
            notify_error(f"Cannot train: {plain_error(exc)}")
            return
        self.job = TrainJob(
            images, annotations, axes, config, model,
            preview_target=self._preview_target(),
            weight_map=self.weight_check.isChecked(),
            uncertainty=self.uncertainty_check.isChecked(),
        )
        self.job.first_preview_shown = threading.Event()
        self.annotation_sync.follow(pairs)
        self.view.start(config)
        self._started_at = time.monotonic()
        self._continue = continue_training
        self._start_worker(self.job.run(), yielded=self._on_yielded, returned=self._on_returned)

    def _check_model_fits(self, model, config):
        meta_mode = (model.metadata or {}).get("mode")
        if meta_mode and meta_mode != config.mode:
            raise ValueError(
                f"the current model was trained on {meta_mode} but the annotations are set to {config.mode}"
            )

    def stop(self):
        """Ask the trainer to stop; it ends within about a second, keeping the best model."""
        if self.job is not None:
            self.job.stop()
            self.progress.setFormat("stopping…")
            self.stop_button.setEnabled(False)

    def sync_annotations(self, force: bool = False) -> None:
        """Hand freshly painted annotations to the trainer (main thread)."""
        self.annotation_sync.sync(self.job, force)

    def _preview_target(self):
        """(pair index, plane index) of the visible slice of the image being previewed."""
        if not self._pairs:
            return None
        active = self.viewer.layers.selection.active
        pair_index = 0
        for i, (image, labels) in enumerate(self._pairs):
            if active is not None and (active == image or active == labels):
                pair_index = i
                break
        image = self._pairs[pair_index][0]
        return pair_index, current_plane_index(self.viewer, image), visible_box(image)

    def _on_view_changed(self, event=None):
        if self.job is not None:
            target = self._preview_target()
            if target != self.job.preview_target:
                self.job.set_preview_target(target)

    def _follow_view(self) -> None:
        """Follow pans and zooms of a large image (its preview is the part in view), twice a second."""
        now = time.monotonic()
        if now - self._view_checked_at >= 0.5:
            self._view_checked_at = now
            self._on_view_changed()

    # -- worker callbacks (main thread) ------------------------------------------------------

    def _on_yielded(self, value):
        kind, payload = value
        if kind == "started":
            device = payload.get("device")
            if device is not None:
                self.status_label.setText(f"Training on {device_label(device)}…")
        elif kind == "progress":
            job = self.job
            self.view.show_progress(payload, job.config if job else None, job.device if job else None)
            self.sync_annotations()
            self._follow_view()
        elif kind == "preview":
            self.view.show_preview(payload, self._pairs)
            if self.job is not None:  # training waits for the first one (TrainJob.first_preview_shown)
                self.job.first_preview_shown.set()

    def _on_returned(self, trainer):
        if trainer.iteration == 0:
            self.progress.setFormat("stopped")
            self.status_label.setText("Stopped before the first iteration: the model was not changed.")
            return
        model = trainer.model
        model.eval()
        iterations = len(getattr(trainer, "history", []) or [])
        origin = "continued training" if getattr(self, "_continue", False) else "trained in this session"
        self.holder.set_model(model, describe_model(model, origin))
        elapsed = time.monotonic() - self._started_at
        shortfall = undertrained_warning(model)
        if shortfall is not None:
            notify_warning(shortfall)
        else:
            notify_info(f"Training finished after {format_seconds(elapsed)}; the model is ready for Predict.")
        logger.info("training finished: %s events", iterations)

    def _worker_done(self):
        job, self.job = self.job, None
        if job is not None:
            job.trainer = None
        self.annotation_sync.disconnect()

    # -- model files -------------------------------------------------------------------------

    def save_model(self, path: str | None = None):
        """Save the current model (asks for a file when ``path`` is None)."""
        if self.holder.model is None:
            notify_error("There is no model to save yet: train one first.")
            return None
        path = path or ask_model_path(self, save=True)
        return save_model_file(self.holder.model, path) if path else None

    def _export_sample(self, model):
        """The visible plane of the first training image, if it fits the model (else None; a 3D
        network's sample would be a volume)."""
        if int(getattr(model.config, "spatial_dims", 2)) != 2:
            return None
        try:
            pairs = self.pair_table.pairs()
            if not pairs:
                return None
            layer = pairs[0][0]
            plane = image_plane(layer, current_plane_index(self.viewer, layer), model.config.in_channels)
            expected = 2 if model.config.in_channels == 1 else 3
            return plane if plane.ndim == expected else None
        except (ValueError, IndexError, TypeError) as exc:
            logger.info("no sample image for the export: %s", exc)
            return None

    def export_bioimageio(self, path: str | None = None):
        """Export the current model as a bioimage.io package (asks for a file when ``path`` is None)."""
        if self.holder.model is None:
            notify_error("There is no model to export yet: train or load one first.")
            return None
        if self.is_running:
            notify_error("Stop training before exporting the model.")
            return None
        overwrite = path is None  # the save dialog has asked before replacing a file
        path = path or ask_export_path(self)
        if not path:
            return None
        model = self.holder.model
        return export_model_file(model, path, sample=self._export_sample(model), overwrite=overwrite)

    def load_model(self, path: str | None = None):
        """Load a model file (asks for it when ``path`` is None); its mode becomes the annotation mode."""
        model = super().load_model(path)
        select_model_mode(self.mode_combo, model)
        return model

    def _stop_on_close(self):
        # stop the trainer, not the worker: it ends by itself and keeps the best model
        if self.job is not None:
            self.job.stop()
        self.annotation_sync.disconnect()
