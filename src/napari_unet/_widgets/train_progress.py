"""TrainProgressView: what the Train widget shows of a running training: the progress bar and
its text, the status line (loss, validation, speed, device), the loss plot and the preview
layers of the visible slice (prediction, uncertainty, weight map)."""

from __future__ import annotations

import math

import numpy as np

from ..progress import format_seconds
from .controls import device_label
from .layers import PREVIEW_SUFFIX, UNCERTAINTY_SUFFIX, WEIGHTS_SUFFIX, spatial_shape, write_plane_layer


class TrainProgressView:
    """Shows the events of a :class:`napari_unet.train_job.TrainJob` in the widget's ``progress``
    bar, ``status_label`` and ``loss_plot``, and its previews in layers of ``viewer``."""

    def __init__(self, viewer, progress, status_label, loss_plot):
        self.viewer = viewer
        self.progress = progress
        self.status_label = status_label
        self.loss_plot = loss_plot
        self._last_validation = (None, None)

    def start(self, config) -> None:
        """A new run with ``config``: empty plot, the bar over its budget."""
        self.loss_plot.clear()
        self._last_validation = (None, None)
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

    def show_progress(self, event, config, device) -> None:
        """Show a :class:`napari_unet.TrainEvent` of a run with ``config`` on ``device``."""
        kind = getattr(event, "kind", "step")
        iteration = int(getattr(event, "iteration", 0))
        if kind == "step":
            self.loss_plot.add(iteration, event.loss, None)
        elif kind == "validation":
            self.loss_plot.add(iteration, None, event.val_loss)
            self._last_validation = (event.val_loss, event.val_iou)
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
        self.status_label.setText(" · ".join(self._status_parts(event, device)))

    def _status_parts(self, event, device) -> list[str]:
        parts = []
        if event.loss is not None:
            parts.append(f"loss {event.loss:.4f}")
        val_loss, val_iou = self._last_validation
        if val_loss is not None and math.isfinite(val_loss):
            parts.append(f"validation {val_loss:.4f}")
        if val_iou is not None and math.isfinite(val_iou):
            parts.append(f"IoU {val_iou:.3f}")
        if event.it_per_s:
            parts.append(f"{event.it_per_s:.2f} it/s")
        if device is not None:
            parts.append(device_label(device))
        return parts

    def show_preview(self, preview: dict, pairs) -> None:
        """Write a preview of the job (``pair``, plane ``index``, layer data) into the layers
        named after the previewed image of ``pairs``."""
        pair = preview["pair"]
        if pair >= len(pairs):
            return
        image = pairs[pair][0]
        if image not in self.viewer.layers:
            return
        index = tuple(preview["index"])
        shape = spatial_shape(image)
        write_plane_layer(self.viewer, image, PREVIEW_SUFFIX, "labels", preview["labels"], index, shape,
                          dtype=np.int32, opacity=0.5)
        if "uncertainty" in preview:
            write_plane_layer(self.viewer, image, UNCERTAINTY_SUFFIX, "image", preview["uncertainty"], index, shape,
                              dtype=np.float32, colormap="inferno", opacity=0.7, contrast_limits=(0.0, 1.0))
        if "weight_map" in preview:
            weights = preview["weight_map"]
            top = float(np.max(weights)) if weights.size else 1.0
            write_plane_layer(self.viewer, image, WEIGHTS_SUFFIX, "image", weights, index, shape,
                              dtype=np.float32, colormap="viridis", opacity=0.7,
                              contrast_limits=(0.0, max(top, 1e-3)))
