"""TrainProgressView: what the Train widget shows of a running training: the progress bar and
its text, the status line (loss, validation, speed, device), the loss plot and the preview
layers of the visible slice (prediction, uncertainty, weight map).

Training reports every iteration; the view (bar, status line and loss plot together) redraws at
most every ``REFRESH_S`` seconds, and at once at the end: under software OpenGL every redraw of
the napari window costs tens of milliseconds of CPU that training would otherwise use."""

from __future__ import annotations

import math
import time

import numpy as np
from qtpy.QtCore import QTimer

from ...common.progress import format_seconds
from ...training.schedule import budget_progress
from ..shared.controls import device_label, set_bar
from ..shared.layers import PREVIEW_SUFFIX, UNCERTAINTY_SUFFIX, WEIGHTS_SUFFIX, spatial_shape, write_plane_layer


class TrainProgressView:
    """Shows the events of a :class:`napari_unet.training.job.TrainJob` in the widget's ``progress``
    bar, ``status_label`` and ``loss_plot``, and its previews in layers of ``viewer``."""

    REFRESH_S = 1.0
    STEPS = 1000  # the bar counts thousandths of the budget

    def __init__(self, viewer, progress, status_label, loss_plot):
        self.viewer = viewer
        self.progress = progress
        self.status_label = status_label
        self.loss_plot = loss_plot
        self._last_validation = (None, None)
        self._pending = None  # (event, config, device) not shown yet
        self._shown_at = -math.inf
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._show_pending)

    def start(self, config) -> None:
        """A new run with ``config``: empty plot, the bar over its budget."""
        self.loss_plot.clear()
        self._last_validation = (None, None)
        self._pending, self._shown_at = None, -math.inf
        if config.checkpoint_dir:
            self.progress.setToolTip(f"Checkpoints every {format_seconds(config.checkpoint_every_s)} and at the end "
                                     f"go to {config.checkpoint_dir} (model files: Load model… opens them)")
        self.progress.setRange(0, self.STEPS)
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.status_label.setText("Preparing the training data…")

    def show_progress(self, event, config, device) -> None:
        """Show a :class:`napari_unet.TrainEvent` of a run with ``config`` on ``device`` (the
        loss at once, the rest at the next refresh)."""
        kind = getattr(event, "kind", "step")
        iteration = int(getattr(event, "iteration", 0))
        if kind == "step":
            self.loss_plot.add(iteration, event.loss, None)
        elif kind == "validation":
            self.loss_plot.add(iteration, None, event.val_loss)
            self._last_validation = (event.val_loss, event.val_iou)
        if kind == "checkpoint":
            self.progress.setToolTip(f"Last checkpoint: {event.message} (a model file: Load model… opens it)")
        self._pending = (event, config, device)
        wait = self._shown_at + self.REFRESH_S - time.monotonic()
        if kind == "done" or wait <= 0:
            self._show_pending()
        elif not self._timer.isActive():
            self._timer.start(int(math.ceil(wait * 1000)))

    def flush(self) -> None:
        """Show what is pending now (e.g. before reading the bar in a test)."""
        self._show_pending()

    def _show_pending(self) -> None:
        self._timer.stop()
        if self._pending is None:
            return
        event, config, device = self._pending
        self._pending = None
        self._shown_at = time.monotonic()
        # One composition of the window for all: the bar, the status line and the plot only mark
        # themselves dirty, and the window is composed once at the next turn of the event loop.
        self.loss_plot.update()
        iteration = int(getattr(event, "iteration", 0))
        elapsed = float(event.elapsed_s or 0.0)
        text = self.budget_text(iteration, elapsed, config)
        if getattr(event, "kind", "step") == "done":
            if event.message:
                self.status_label.setText(f"Training {event.message}.")
            set_bar(self.progress, self.STEPS, f"{text}  done")
            return
        self.status_label.setText(" · ".join(self._status_parts(event, device)))
        value = None if config is None else int(min(1.0, budget_progress(config, iteration, elapsed)) * self.STEPS)
        set_bar(self.progress, value, f"{text}  ETA {format_seconds(event.eta_s)}")

    @staticmethod
    def budget_text(iteration: int, elapsed: float, config) -> str:
        """The bar's text: the iterations, and the time against the limit when the time limit
        is the budget that ends the run first (``budget_progress`` follows the same one)."""
        if config is None:
            return f"{iteration} it."
        by_time = (config.time_limit_s is not None and
                   (config.iterations is None or elapsed / config.time_limit_s >= iteration / config.iterations))
        if by_time:
            return f"{iteration} it. · {format_seconds(elapsed)} of {format_seconds(config.time_limit_s)}"
        return f"{iteration}/{config.iterations} it."

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
        index = tuple(preview["index"]) + tuple(preview.get("box") or ())  # the plane, or its part in view
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
