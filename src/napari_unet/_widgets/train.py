"""TrainWidget: train a U-Net on painted annotations, with a live preview of the visible slice.

The training runs in a napari thread worker (a generator over the core's ``Trainer.run()``);
everything that touches layers happens on the main thread, in the ``yielded`` callbacks. While
it trains, the user keeps painting: painted annotations are handed to the trainer
(``Trainer.set_annotations``) every few iterations.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..axes import channels_last_to_first
from ..progress import format_seconds
from ..train_job import TrainJob
from .controls import device_label, select_model_mode
from .layers import (PREVIEW_SUFFIX, UNCERTAINTY_SUFFIX, WEIGHTS_SUFFIX, current_plane_index, disconnect_all,
                     image_axes, image_plane, is_kind, layer_annotation_problems, spatial_shape, upsert_layer)
from .loss_plot import LossPlot
from .model_state import ask_export_path, ask_model_path, describe_model, model_holder
from .notify import notify_error, notify_info, notify_warning, plain_error
from .pair_table import PairTable
from .train_settings import TrainSettings
from .workers import WorkerWidgetMixin

logger = logging.getLogger(__name__)


# hand freshly painted annotations to the trainer at most this often
SYNC_EVERY_S = 1.0


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
        self._dirty: set[int] = set()
        self._last_sync = 0.0
        self._connections: list = []
        self._started_at = 0.0

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

        group = QGroupBox("Model")
        group_layout = QVBoxLayout(group)
        self.model_label = QLabel(self.holder.description)
        self.model_label.setWordWrap(True)
        group_layout.addWidget(self.model_label)
        model_buttons = QHBoxLayout()
        self.save_button = QPushButton("Save model…")
        self.save_button.setToolTip("Save the model (weights, architecture, normalization, classes) to a .unet file.")
        self.save_button.clicked.connect(self.save_model)
        self.load_button = QPushButton("Load model…")
        self.load_button.setToolTip("Load a .unet model file (to predict with, or to continue training).")
        self.load_button.clicked.connect(self.load_model)
        self.export_button = QPushButton("Export bioimage.io…")
        self.export_button.setToolTip(
            "Export the model as a bioimage.io package (zip) for ilastik, deepImageJ (Fiji), QuPath and the "
            "bioimage.io model zoo; the visible plane of the first training image becomes its test image.")
        self.export_button.clicked.connect(self.export_bioimageio)
        model_buttons.addWidget(self.save_button)
        model_buttons.addWidget(self.load_button)
        group_layout.addLayout(model_buttons)
        group_layout.addWidget(self.export_button)
        layout.addWidget(group)
        layout.addStretch(1)

        self.holder.changed.connect(self._on_model_changed)
        napari_viewer.dims.events.current_step.connect(self._on_view_changed)
        napari_viewer.layers.selection.events.active.connect(self._on_view_changed)
        self._set_running(False)

    # -- state ------------------------------------------------------------------------------

    def _set_running(self, running: bool) -> None:
        has_model = self.holder.model is not None
        self.start_button.setEnabled(not running)
        self.continue_button.setEnabled(not running and has_model)
        self.stop_button.setEnabled(running)
        self.load_button.setEnabled(not running)
        self.save_button.setEnabled(has_model)
        self.export_button.setEnabled(has_model and not running)
        for widget in (self.pair_table, self.mode_combo, self.preset_combo, self.batch_spin,
                       self.augment_check, self.device_combo):
            widget.setEnabled(not running)

    def _on_model_changed(self, description: str) -> None:
        self.model_label.setText(description)
        self._set_running(self.is_running)

    def train_config(self, continue_training: bool = False, model=None):
        from ..config import AugmentConfig, TrainConfig, model_preset

        iterations = self.iterations_spin.value() or None
        minutes = self.time_spin.value()
        time_limit = minutes * 60.0 if minutes > 0 else None
        if iterations is None and time_limit is None:
            raise ValueError("set an iteration count or a time limit: training needs a budget")
        mode = self.mode_combo.currentData()
        kwargs = dict(
            mode=mode,
            preset=self.preset_combo.currentData(),
            iterations=iterations,
            time_limit_s=time_limit,
            batch_size=self.batch_spin.value(),
            augment=AugmentConfig(enabled=self.augment_check.isChecked()),
            device=self.device_combo.device(),
            preview_every=self.preview_spin.value(),
            checkpoint_dir=self._checkpoint_dir(),
        )
        if model is None:
            in_channels, n_classes = self._channels_and_classes(mode)
            kwargs["model"] = model_preset(kwargs["preset"], in_channels=in_channels, n_classes=n_classes)
            if n_classes is not None and mode == "classes":
                kwargs["n_classes"] = n_classes
        else:
            kwargs["model"] = model.config
            if mode == "classes":
                kwargs["n_classes"] = model.config.n_classes
        return TrainConfig(**kwargs)

    def _checkpoint_dir(self) -> str | None:
        """A fresh checkpoint folder for this run (None, with a warning, if none can be made)."""
        from ..checkpoints import checkpoint_run_dir

        try:
            return str(checkpoint_run_dir())
        except OSError as exc:
            notify_warning(f"Training without checkpoints (cannot create the checkpoint folder: {plain_error(exc)})")
            return None

    def _channels_and_classes(self, mode):
        channels = set()
        for image, _ in self._pairs:
            axes = image_axes(image)
            channels.add(int(image.data.shape[axes.index("C")]) if "C" in axes else 1)
        if len(channels) > 1:
            raise ValueError(f"the checked images have different channel counts {sorted(channels)}: train on one kind")
        in_channels = channels.pop() if channels else 1
        n_classes = 2
        if mode == "classes":
            n_classes = max(2, max(int(np.max(labels.data)) for _, labels in self._pairs))
        return in_channels, n_classes

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
        self._connect_annotation_layers(pairs)
        self.loss_plot.clear()
        self._dirty.clear()
        self._warned = set()
        self._last_validation = (None, None)
        self._started_at = time.monotonic()
        if config.checkpoint_dir:
            self.progress.setToolTip(f"Checkpoints every {format_seconds(config.checkpoint_every_s)} and at the end "
                                     f"go to {config.checkpoint_dir} (model files: Load model… opens them)")
        if config.iterations:
            self.progress.setRange(0, int(config.iterations))
        else:
            self.progress.setRange(0, int(config.time_limit_s))
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.status_label.setText("Preparing the training data…")
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

    def _connect_annotation_layers(self, pairs):
        disconnect_all(self._connections)
        self._connections = []
        for index, (_, labels) in enumerate(pairs):
            def callback(event=None, index=index):
                self._dirty.add(index)

            for emitter in (labels.events.paint, labels.events.data):
                emitter.connect(callback)
                self._connections.append((emitter, callback))

    def sync_annotations(self, force: bool = False) -> None:
        """Hand freshly painted annotations to the trainer (main thread)."""
        if self.job is None or not self._dirty:
            return
        if not force and time.monotonic() - self._last_sync < SYNC_EVERY_S:
            return
        for index in sorted(self._dirty):
            image, labels = self._pairs[index]
            errors, _ = layer_annotation_problems(image, labels, self.job.config.mode)
            if errors:
                # keep training on the previous annotations until they are usable again
                if index not in self._warned:
                    self._warned.add(index)
                    notify_warning("Still training on the previous annotations: " + " ".join(errors))
                continue
            self._warned.discard(index)
            try:
                self.job.set_annotations(index, np.array(labels.data, copy=True))
            except (ValueError, TypeError) as exc:
                notify_warning(f"The new annotations of {labels.name!r} were not used: {plain_error(exc)}")
        self._dirty.clear()
        self._last_sync = time.monotonic()

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
        return pair_index, current_plane_index(self.viewer, image)

    def _on_view_changed(self, event=None):
        if self.job is not None:
            target = self._preview_target()
            if target != self.job.preview_target:
                self.job.set_preview_target(target)

    # -- worker callbacks (main thread) ------------------------------------------------------

    def _on_yielded(self, value):
        kind, payload = value
        if kind == "started":
            device = payload.get("device")
            if device is not None:
                self.status_label.setText(f"Training on {device_label(device)}…")
        elif kind == "progress":
            self._show_progress(payload)
            self.sync_annotations()
        elif kind == "preview":
            self._show_preview(payload)

    def _show_progress(self, event):
        kind = getattr(event, "kind", "step")
        iteration = int(getattr(event, "iteration", 0))
        if kind == "step":
            self.loss_plot.add(iteration, event.loss, None)
        elif kind == "validation":
            self.loss_plot.add(iteration, None, event.val_loss)
            self._last_validation = (event.val_loss, event.val_iou)
        config = self.job.config if self.job else None
        if config is not None and config.iterations:
            self.progress.setValue(min(iteration, self.progress.maximum()))
            text = f"{iteration}/{config.iterations} it."
        else:
            self.progress.setValue(int(min(event.elapsed_s or 0, self.progress.maximum())))
            text = f"{iteration} it."
        if kind == "checkpoint":
            self.progress.setToolTip(f"Last checkpoint: {event.message} (a model file: Load model… opens it)")
        if kind == "done":
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat(f"{text}  done")
            if event.message:
                self.status_label.setText(f"Training {event.message}.")
            return
        self.progress.setFormat(f"{text}  ETA {format_seconds(event.eta_s)}")
        parts = []
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        val_loss, val_iou = getattr(self, "_last_validation", (None, None))
        if val_loss is not None and math.isfinite(val_loss):
            parts.append(f"validation {val_loss:.4f}")
        if val_iou is not None and math.isfinite(val_iou):
            parts.append(f"IoU {val_iou:.3f}")
        if event.it_per_s:
            parts.append(f"{event.it_per_s:.2f} it/s")
        if self.job is not None and self.job.device is not None:
            parts.append(device_label(self.job.device))
        self.status_label.setText(" · ".join(parts))

    def _show_preview(self, preview):
        pair = preview["pair"]
        if pair >= len(self._pairs):
            return
        image = self._pairs[pair][0]
        if image not in self.viewer.layers:
            return
        index = tuple(preview["index"])
        shape = spatial_shape(image)
        self._update_plane_layer(image, PREVIEW_SUFFIX, "labels", preview["labels"], index, shape,
                                 dtype=np.int32, opacity=0.5)
        if "uncertainty" in preview:
            self._update_plane_layer(image, UNCERTAINTY_SUFFIX, "image", preview["uncertainty"], index, shape,
                                     dtype=np.float32, colormap="inferno", opacity=0.7,
                                     contrast_limits=(0.0, 1.0))
        if "weight_map" in preview:
            weights = preview["weight_map"]
            top = float(np.max(weights)) if weights.size else 1.0
            self._update_plane_layer(image, WEIGHTS_SUFFIX, "image", weights, index, shape,
                                     dtype=np.float32, colormap="viridis", opacity=0.7,
                                     contrast_limits=(0.0, max(top, 1e-3)))

    def _update_plane_layer(self, image, suffix, kind, plane, index, shape, dtype, **kwargs):
        """Write one plane into the layer ``<image><suffix>`` (created at the image's full shape)."""
        name = image.name + suffix
        layer = next((l for l in self.viewer.layers if l.name == name and is_kind(l, kind)), None)
        if layer is None or tuple(layer.data.shape) != shape:
            data = np.zeros(shape, dtype=dtype)
            data[index] = plane
            return upsert_layer(self.viewer, name, kind, data, source_layer=image, **kwargs)
        if index:
            layer.data[index] = plane
        else:
            layer.data[...] = plane
        if "contrast_limits" in kwargs and kind == "image":
            layer.contrast_limits = kwargs["contrast_limits"]
        layer.refresh()
        return layer

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
        self.progress.setFormat("done")
        elapsed = time.monotonic() - self._started_at
        notify_info(f"Training finished after {format_seconds(elapsed)}; the model is ready for Predict.")
        logger.info("training finished: %s events", iterations)

    def _worker_done(self):
        job, self.job = self.job, None
        if job is not None:
            job.trainer = None
        disconnect_all(self._connections)
        self._connections = []

    # -- model files -------------------------------------------------------------------------

    def save_model(self, path: str | None = None):
        """Save the current model (asks for a file when ``path`` is None)."""
        if self.holder.model is None:
            notify_error("There is no model to save yet: train one first.")
            return None
        path = path or ask_model_path(self, save=True)
        if not path:
            return None
        path = Path(path)
        if path.suffix != ".unet":
            path = path.with_suffix(".unet")
        from ..model_files import save_model

        try:
            save_model(self.holder.model, path, overwrite=True)  # the save dialog asked
        except (OSError, ValueError) as exc:
            notify_error(f"Could not save the model to {path}: {plain_error(exc)}")
            return None
        notify_info(f"Model saved to {path}")
        return path

    def _export_sample(self, model):
        """The visible plane of the first training image, if it fits the model (else None)."""
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
        path = Path(path)
        if not path.name.endswith(".zip"):
            path = path.with_name(path.name + ".zip")
        from qtpy.QtWidgets import QApplication

        from ..bioimageio import export_bioimageio

        model = self.holder.model
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            export_bioimageio(model, path, sample=self._export_sample(model), overwrite=overwrite)
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

    def load_model(self, path: str | None = None):
        """Load a model file (asks for it when ``path`` is None); its mode becomes the annotation mode."""
        model = super().load_model(path)
        select_model_mode(self.mode_combo, model)
        return model

    def _stop_on_close(self):
        # stop the trainer, not the worker: it ends by itself and keeps the best model
        if self.job is not None:
            self.job.stop()
        disconnect_all(self._connections)
