"""Shared pieces of the widgets: workers, notifications, layer pickers, the loss plot, the model
shared between the widgets of one viewer, devices and small layer helpers.

Only the widgets import this module (it imports Qt and napari). torch and the core are imported
inside functions, so opening the Plugins menu stays fast.
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from qtpy.QtCore import QObject, QPointF, QRectF, Qt, QTimer, Signal
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

logger = logging.getLogger(__name__)

NOTHREADS_ENV = "NAPARI_UNET_NOTHREADS"

# suffixes of the layers the widgets create, so re-running finds and updates them
ANNOTATIONS_SUFFIX = " annotations"
PREDICTION_SUFFIX = " prediction"
PROBABILITY_SUFFIX = " probability"
PREVIEW_SUFFIX = " preview"
UNCERTAINTY_SUFFIX = " uncertainty"
WEIGHTS_SUFFIX = " weight map"

# what the annotations mean / what a prediction outputs: (value, label) for the combo boxes
MODE_CHOICES = [("instances", "cells (instances)"), ("classes", "classes")]


# ------------------------------------------------------------------------------------------
# notifications


def notify_error(message: str) -> None:
    """Show ``message`` as a napari error notification (and log it)."""
    from napari.utils.notifications import show_error

    logger.error(message)
    show_error(message)


def notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    logger.warning(message)
    show_warning(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    logger.info(message)
    show_info(message)


class JobError(Exception):
    """Wraps an exception raised inside a worker (see :func:`make_worker`)."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def plain_error(exc: BaseException) -> str:
    """The message of ``exc`` in plain words (no traceback), for a notification."""
    if isinstance(exc, JobError):
        exc = exc.original
    if isinstance(exc, MemoryError):
        return "not enough memory (try a smaller network, batch size or tile)"
    text = str(exc).strip() or type(exc).__name__
    if "out of memory" in text.lower():
        return "the device ran out of memory (try the fast network, a smaller batch size, or the CPU)"
    return text


# ------------------------------------------------------------------------------------------
# workers


def threads_disabled() -> bool:
    """True when ``NAPARI_UNET_NOTHREADS=1``: generators run synchronously (for debugging)."""
    return os.environ.get(NOTHREADS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class SyncWorker:
    """Runs a generator on the calling thread with the callbacks of a napari GeneratorWorker.

    Used when ``NAPARI_UNET_NOTHREADS=1``: the same code path, without a thread, so a debugger
    or a profiler sees everything.
    """

    def __init__(self, generator):
        self._generator = generator
        self._abort = False
        self.is_running = False
        self.callbacks: dict[str, list[Callable]] = {
            k: [] for k in ("started", "yielded", "returned", "errored", "aborted", "finished")
        }

    def quit(self) -> None:
        self._abort = True

    def _emit(self, name, *args):
        for cb in self.callbacks[name]:
            cb(*args)

    def start(self) -> None:
        self.is_running = True
        self._emit("started")
        try:
            while True:
                if self._abort:
                    self._generator.close()
                    self._emit("aborted")
                    break
                try:
                    value = next(self._generator)
                except StopIteration as stop:
                    self._emit("returned", stop.value)
                    break
                self._emit("yielded", value)
        except Exception as exc:  # noqa: BLE001 - relayed like a worker error
            self._emit("errored", exc)
        finally:
            self.is_running = False
            self._emit("finished")


def make_worker(
    generator,
    *,
    yielded: Callable | None = None,
    returned: Callable | None = None,
    errored: Callable | None = None,
    aborted: Callable | None = None,
    finished: Callable | None = None,
):
    """A napari thread worker running ``generator`` (a generator object), callbacks connected.

    Callbacks run on the main thread (Qt queued signals), so they may touch layers. With
    ``NAPARI_UNET_NOTHREADS=1`` it is a :class:`SyncWorker`: ``start()`` runs the generator to
    its end on the calling thread, with the same callbacks. Keep a reference before calling
    ``start()`` (the ``finished`` callback may run inside it). ``quit()`` cancels at the next
    yielded event.
    """
    connections = {
        "yielded": yielded,
        "returned": returned,
        "errored": errored,
        "aborted": aborted,
        "finished": finished,
    }
    if threads_disabled():
        worker = SyncWorker(generator)
        for name, cb in connections.items():
            if cb is not None:
                worker.callbacks[name].append(cb)
        return worker

    worker = _thread_worker_class()(_relay, generator)
    for name, cb in connections.items():
        if cb is not None:
            getattr(worker, name).connect(cb)
    return worker


def _relay(generator):
    return (yield from generator)


class WorkerWidgetMixin:
    """The worker life cycle shared by the Train, Predict and Batch widgets.

    Mix it in before ``QWidget``. The widget provides ``_set_running(running)`` (enables /
    disables its controls), ``JOB_NAME`` (e.g. ``"Prediction"``, for the log and the error
    notification), ``holder`` (the viewer's :class:`ModelHolder`) and ``device_combo``, and builds
    ``progress`` and ``status_label`` with :meth:`_add_progress`.
    ``worker`` is the running worker, None when idle. Hooks: ``_failure_message(exc)``,
    ``_worker_done()`` (cleanup once the worker has ended, before the controls are enabled
    again) and ``_stop_on_close()``.
    """

    JOB_NAME = "The job"
    worker = None

    def load_model(self, path: str | None = None):
        """Load a model file (asks for it when ``path`` is None) into the viewer's model."""
        path = path or ask_model_path(self)
        if not path:
            return None
        return load_model_into(self.holder, path, device=self.device_combo.device())

    def _add_run_buttons(self, layout, run_text: str, run: Callable) -> QPushButton:
        """Add a row with the run button (returned) and ``self.cancel_button``."""
        buttons = QHBoxLayout()
        run_button = QPushButton(run_text)
        run_button.clicked.connect(run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        return run_button

    def _add_progress(self, layout, maximum: int = 1, value: int | None = 0) -> None:
        """Add ``self.progress`` (reading "idle") and the word-wrapped ``self.status_label``.

        ``value=None`` leaves the bar reset (no text shown until the first run).
        """
        self.progress = QProgressBar()
        self.progress.setRange(0, maximum)
        if value is not None:
            self.progress.setValue(value)
        self.progress.setFormat("idle")
        layout.addWidget(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)

    @property
    def is_running(self) -> bool:
        return self.worker is not None

    def _start_worker(self, generator, *, yielded, returned, aborted: Callable | None = None) -> None:
        """Disable the controls and run ``generator`` in a worker with the standard callbacks."""
        self._set_running(True)
        self.worker = make_worker(
            generator,
            yielded=yielded,
            returned=returned,
            errored=self._on_errored,
            aborted=aborted,
            finished=self._on_finished,
        )
        self.worker.start()

    def cancel(self) -> None:
        """Cancel the worker at its next yielded event."""
        if self.worker is not None:
            self.worker.quit()
            self.progress.setFormat("cancelling…")

    def _failure_message(self, exc: BaseException) -> str:
        return f"{self.JOB_NAME} failed: {plain_error(exc)}"

    def _on_errored(self, exc) -> None:
        # logged under the widget's own module, as before
        logging.getLogger(type(self).__module__).error(
            "%s failed", self.JOB_NAME.lower(), exc_info=(type(exc), exc, exc.__traceback__)
        )
        notify_error(self._failure_message(exc))
        self.progress.setFormat("failed")

    def _worker_done(self) -> None:
        """Cleanup after the worker ended (any way), before the controls are enabled again."""

    def _on_finished(self) -> None:
        self.worker = None
        self._worker_done()
        self._set_running(False)
        free_device_memory()

    def _stop_on_close(self) -> None:
        if self.worker is not None:
            self.worker.quit()

    def closeEvent(self, event):  # noqa: N802 - Qt API
        self._stop_on_close()
        super().closeEvent(event)


_WORKER_CLASS = None


def _thread_worker_class():
    """napari's GeneratorWorker (napari.qt.threading), made to (1) close the generator in the worker thread when it
    ends or is cancelled, so the generator's ``with`` blocks (e.g. ``torch.inference_mode``,
    which is thread-local) exit on the thread that entered them, and (2) reports RuntimeErrors
    (torch's out-of-memory, ...) through ``errored`` + ``finished``: superqt otherwise reads a
    RuntimeError as "the worker was deleted" and emits neither. napari's own relay of errors to
    the notification manager is disconnected: the widgets report errors in plain words."""
    global _WORKER_CLASS
    if _WORKER_CLASS is None:
        from napari.qt.threading import GeneratorWorker

        class _Worker(GeneratorWorker):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                relay = getattr(self, "_relay_error", None)
                if relay is not None:
                    try:
                        self.errored.disconnect(relay)
                    except (TypeError, RuntimeError):
                        pass

            def work(self):
                try:
                    result = super().work()
                finally:
                    self._gen.close()
                if isinstance(result, RuntimeError):
                    result = JobError(result)
                return result

        _WORKER_CLASS = _Worker
    return _WORKER_CLASS


# ------------------------------------------------------------------------------------------
# formatting


def format_seconds(seconds: float | None) -> str:
    """``75`` -> ``"1:15"``; ``3700`` -> ``"1:01:40"``; None -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


# ------------------------------------------------------------------------------------------
# devices


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
    """Return cached GPU memory to the driver (after training or prediction)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None:
        if torch.backends.mps.is_available() and hasattr(mps, "empty_cache"):
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
            "where the width drops by more than 0.2 x diameter, and objects smaller than a tenth of\n"
            "a typical cell are dropped. 'from the model': the median diameter of the cells\n"
            "painted for training. Raise it if cells come out cut in two, lower it if touching\n"
            "cells stay merged."
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


# ------------------------------------------------------------------------------------------
# the model shared by the widgets of one viewer


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
        parts.append(f"{iterations} iterations")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------
# layers


def spatial_shape(layer) -> tuple[int, ...]:
    """Shape of an image layer without an RGB(A) channel axis."""
    shape = tuple(int(s) for s in layer.data.shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def image_axes(layer, in_channels: int = 1) -> str:
    """Axis names of an image layer's data for the core (``"YX"``, ``"ZYX"``, ``"YXC"``, ...).

    RGB(A) layers carry the channel last. A non-RGB layer is read as channels-first when the
    model wants ``in_channels > 1`` and the third-last axis has that size.
    """
    ndim = layer.data.ndim
    if getattr(layer, "rgb", False):
        leading = ndim - 3
        return "TZ"[2 - leading:] + "YXC" if leading <= 2 else _too_many(layer)
    if in_channels > 1 and ndim >= 3 and layer.data.shape[-3] == in_channels:
        leading = ndim - 3
        return ("TZ"[2 - leading:] + "CYX") if leading <= 2 else _too_many(layer)
    leading = ndim - 2
    if leading < 0:
        raise ValueError(f"layer {layer.name!r} has {ndim} dimension(s); an image needs at least 2 (Y, X)")
    return ("TZ"[2 - leading:] + "YX") if leading <= 2 else _too_many(layer)


def _too_many(layer):
    raise ValueError(
        f"layer {layer.name!r} has shape {tuple(layer.data.shape)}: more than 2 axes before Y, X "
        "(and channels) are not supported"
    )


def channels_last_to_first(data, axes: str):
    """Move a trailing ``C`` axis in front of ``YX``: ``("...YXC")`` -> ``("...CYX")``."""
    if axes.endswith("YXC"):
        return np.moveaxis(np.asarray(data), -1, -3), axes[:-3] + "CYX"
    return data, axes


def current_plane_index(viewer, layer) -> tuple[int, ...]:
    """Data index of the visible plane of ``layer`` along its axes before (C,) Y, X."""
    n_leading = len(spatial_shape(layer)) - 2
    if n_leading <= 0:
        return ()
    point = layer.world_to_data(viewer.dims.point)
    shape = spatial_shape(layer)
    # world_to_data works on the layer dims (channel axis of RGB excluded)
    index = []
    for axis in range(n_leading):
        value = int(np.round(point[axis])) if axis < len(point) else 0
        index.append(int(np.clip(value, 0, shape[axis] - 1)))
    return tuple(index)


def image_plane(layer, index: tuple[int, ...], in_channels: int = 1) -> np.ndarray:
    """One plane of an image layer, ``(Y, X)`` or ``(C, Y, X)``, as a numpy array."""
    axes = image_axes(layer, in_channels)
    data = layer.data
    plane = np.asarray(data[tuple(index)]) if index else np.asarray(data)
    plane_axes = axes[len(index):]
    plane, _ = channels_last_to_first(plane, plane_axes)
    return plane


def is_kind(layer, kind: str) -> bool:
    """True when ``layer`` is a napari ``Image`` (kind "image") or ``Labels`` (kind "labels")."""
    from napari.layers import Image, Labels

    return isinstance(layer, {"image": Image, "labels": Labels}[kind])


def find_layer(viewer, name: str, kind: str | None = None):
    """The layer called ``name`` (of type ``kind``: "labels"/"image"), or None."""
    for layer in viewer.layers:
        if layer.name == name and (kind is None or is_kind(layer, kind)):
            return layer
    return None


def matching_annotations(viewer, image_layer):
    """The annotation Labels layer of ``image_layer`` (by name, then by marker), or None."""
    if image_layer is None:
        return None
    named = find_layer(viewer, image_layer.name + ANNOTATIONS_SUFFIX, "labels")
    if named is not None:
        return named
    for layer in viewer.layers:
        if is_kind(layer, "labels") and layer.metadata.get("napari_unet_annotations_of") == image_layer.name:
            return layer
    return None


def is_output_layer(layer) -> bool:
    """True for the layers the widgets make (preview, uncertainty, prediction, ...)."""
    return bool(layer.metadata.get("napari_unet_output"))


def upsert_layer(viewer, name: str, kind: str, data, source_layer=None, **kwargs):
    """Update the data of layer ``name`` when it exists with the same shape; else add it.

    Re-running a prediction updates its output layer instead of piling up new ones. Adding a
    layer does not change the selected layer (the user may be painting).
    """
    layer = find_layer(viewer, name, kind)
    if layer is not None and tuple(layer.data.shape) == tuple(np.shape(data)):
        layer.data = data
        for key in ("colormap", "contrast_limits"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        layer.refresh()
        return layer
    active = viewer.layers.selection.active
    if layer is not None:
        viewer.layers.remove(layer)
    if source_layer is not None:
        n = len(spatial_shape(source_layer))
        kwargs.setdefault("scale", tuple(source_layer.scale)[-n:])
        kwargs.setdefault("translate", tuple(source_layer.translate)[-n:])
    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata.setdefault("napari_unet_output", name)
    if source_layer is not None:
        metadata.setdefault("napari_unet_source", source_layer.name)
    adder = viewer.add_labels if kind == "labels" else viewer.add_image
    layer = adder(data, name=name, metadata=metadata, **kwargs)
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return layer


class FollowsLayersMixin:
    """Calls ``self.refresh()`` whenever a layer is added, removed, moved or renamed.

    Call :meth:`_follow_layers` once from ``__init__`` (the callbacks are bound methods, so the
    viewer does not keep the widget alive).
    """

    def _follow_layers(self, viewer) -> None:
        events = viewer.layers.events
        for emitter in (events.inserted, events.removed, events.moved):
            emitter.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)

    def _on_layers_changed(self, event=None):
        value = getattr(event, "value", None)
        if getattr(event, "type", "") == "inserted" and value is not None:
            value.events.name.connect(self.refresh)
        self.refresh()


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one kind ("image" or "labels"), kept up to date.

    ``filter`` (optional) further restricts the listed layers. The current choice survives
    layer insertions, removals and renames.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer, kind: str, parent=None, filter: Callable | None = None, allow_none: bool = False):
        super().__init__(parent)
        self.viewer = viewer
        self.kind = kind
        self._filter = filter
        self._allow_none = allow_none
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.currentIndexChanged.connect(self._emit_changed)
        events = viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        events.moved.connect(self._on_layers_changed)
        for layer in viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.refresh()

    def _on_layers_changed(self, event=None):
        value = getattr(event, "value", None)
        if event is not None and getattr(event, "type", "") == "inserted" and value is not None:
            value.events.name.connect(self._on_layers_changed)
        self.refresh()

    def layers(self) -> list:
        return [
            layer for layer in self.viewer.layers
            if is_kind(layer, self.kind) and not is_output_layer(layer)
            and (self._filter is None or self._filter(layer))
        ]

    def refresh(self) -> None:
        current = self.layer()
        names = [layer.name for layer in self.layers()]
        self.blockSignals(True)
        try:
            self.clear()
            if self._allow_none:
                self.addItem("(none)", None)
            for name in names:
                self.addItem(name, name)
            if current is not None and current.name in names:
                self.setCurrentIndex(self.findData(current.name))
            else:
                self._select_default()
        finally:
            self.blockSignals(False)
        self._emit_changed()

    def _select_default(self):
        active = self.viewer.layers.selection.active
        if active is not None and is_kind(active, self.kind) and self.findData(active.name) >= 0:
            self.setCurrentIndex(self.findData(active.name))

    def layer(self):
        name = self.currentData()
        if name is None:
            return None
        for layer in self.viewer.layers:
            if layer.name == name and is_kind(layer, self.kind):
                return layer
        return None

    def set_layer(self, layer) -> None:
        index = self.findData(layer.name)
        if index >= 0:
            self.setCurrentIndex(index)

    def _emit_changed(self, *_):
        self.layer_changed.emit(self.layer())


# ------------------------------------------------------------------------------------------
# loss plot


class LossPlot(QWidget):
    """A small live plot of the training and validation loss (QPainter, no matplotlib)."""

    TRAIN_COLOR = QColor(90, 170, 255)
    VAL_COLOR = QColor(255, 150, 60)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.train: list[tuple[float, float]] = []
        self.validation: list[tuple[float, float]] = []
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Training loss (blue, smoothed) and validation loss (orange) per iteration")
        self._pending = False

    def clear(self) -> None:
        self.train.clear()
        self.validation.clear()
        self.update()

    def add(self, iteration: float, loss: float | None = None, val_loss: float | None = None) -> None:
        if loss is not None and math.isfinite(loss):
            self.train.append((float(iteration), float(loss)))
        if val_loss is not None and math.isfinite(val_loss):
            if not self.validation or self.validation[-1][0] != iteration:
                self.validation.append((float(iteration), float(val_loss)))
        # repaint at most ~20 times a second
        if not self._pending:
            self._pending = True
            QTimer.singleShot(50, self._repaint)

    def _repaint(self):
        self._pending = False
        self.update()

    @staticmethod
    def _smooth(points: Sequence[tuple[float, float]], alpha: float = 0.9):
        out, value = [], None
        for x, y in points:
            value = y if value is None else alpha * value + (1 - alpha) * y
            out.append((x, value))
        return out

    def paintEvent(self, event):  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        fg = palette.color(palette.ColorRole.WindowText)
        painter.fillRect(self.rect(), palette.color(palette.ColorRole.Base))
        font = QFont(painter.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        left, right, top, bottom = metrics.horizontalAdvance("0.000") + 8, 8, 8, metrics.height() + 6
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        painter.setPen(QPen(fg, 1))
        painter.drawRect(plot)
        train = self._smooth(self.train) if len(self.train) > 1 else list(self.train)
        series = [(train, self.TRAIN_COLOR), (self.validation, self.VAL_COLOR)]
        points = [p for s, _ in series for p in s]
        if not points:
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "loss: start training")
            painter.end()
            return
        xs = [p[0] for p in points]
        ys = [p[1] for p in points] + [p[1] for p in self.train[-200:]]
        x0, x1 = min(xs), max(xs)
        y0, y1 = 0.0, max(ys)
        if x1 <= x0:
            x1 = x0 + 1
        if y1 <= y0:
            y1 = y0 + 1
        y1 *= 1.05

        def to_screen(x, y):
            return QPointF(
                plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                plot.bottom() - (y - y0) / (y1 - y0) * plot.height(),
            )

        # raw training loss, faint
        if len(self.train) > 1:
            faint = QColor(self.TRAIN_COLOR)
            faint.setAlpha(70)
            self._draw_series(painter, self.train, faint, to_screen, 1)
        for data, color in series:
            self._draw_series(painter, data, color, to_screen, 2)
        painter.setPen(QPen(fg, 1))
        painter.drawText(QRectF(0, plot.top() - 4, left - 4, metrics.height()), Qt.AlignmentFlag.AlignRight, f"{y1:.3g}")
        painter.drawText(QRectF(0, plot.bottom() - metrics.height() + 4, left - 4, metrics.height()),
                         Qt.AlignmentFlag.AlignRight, "0")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), metrics.height()),
                         Qt.AlignmentFlag.AlignLeft, f"{x0:.0f}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), metrics.height()),
                         Qt.AlignmentFlag.AlignRight, f"{x1:.0f} it.")
        # legend
        lx, ly = plot.right() - 8, plot.top() + 4
        for label, color, data in (("train", self.TRAIN_COLOR, self.train), ("validation", self.VAL_COLOR, self.validation)):
            if not data:
                continue
            text = f"{label} {data[-1][1]:.3f}"
            width = metrics.horizontalAdvance(text)
            painter.setPen(QPen(color, 2))
            painter.drawText(QRectF(lx - width, ly, width, metrics.height()), Qt.AlignmentFlag.AlignRight, text)
            ly += metrics.height()
        painter.end()

    @staticmethod
    def _draw_series(painter, data, color, to_screen, width):
        if not data:
            return
        painter.setPen(QPen(color, width))
        if len(data) == 1:
            painter.drawEllipse(to_screen(*data[0]), 2, 2)
            return
        path = QPainterPath(to_screen(*data[0]))
        for x, y in data[1:]:
            path.lineTo(to_screen(x, y))
        painter.drawPath(path)


# ------------------------------------------------------------------------------------------
# annotation checks


def annotation_summary(annotations, mode: str = "instances") -> dict[str, Any]:
    """Counts shown by the Annotate widget: pixels, background pixels, cells/classes, slices."""
    data = np.asarray(annotations)
    annotated = data != 0
    n_annotated = int(np.count_nonzero(annotated))
    n_background = int(np.count_nonzero(data == 1))
    ids = np.unique(data[annotated]) if n_annotated else np.zeros(0, dtype=data.dtype)
    ids = ids[ids >= 2]
    if data.ndim > 2:
        per_slice = annotated.reshape(-1, data.shape[-2] * data.shape[-1]).any(axis=1)
        n_slices, total_slices = int(per_slice.sum()), int(per_slice.size)
    else:
        n_slices, total_slices = int(n_annotated > 0), 1
    return {
        "pixels": n_annotated,
        "background": n_background,
        "objects": int(ids.size),
        "ids": ids,
        "slices": n_slices,
        "total_slices": total_slices,
        "total_pixels": int(data.size),
    }


def annotation_problems(image_layer, labels_layer, mode: str = "instances") -> tuple[list[str], list[str]]:
    """What stops training (errors) and what makes it weak (warnings), in plain words."""
    errors: list[str] = []
    warnings_: list[str] = []
    if image_layer is None:
        errors.append("Select an image layer first.")
        return errors, warnings_
    if labels_layer is None:
        errors.append(
            f"Image {image_layer.name!r} has no annotation layer: create one in the Annotate widget "
            f"(or name a Labels layer {image_layer.name + ANNOTATIONS_SUFFIX!r})."
        )
        return errors, warnings_
    image_shape = spatial_shape(image_layer)
    if tuple(labels_layer.data.shape) != image_shape:
        errors.append(
            f"The annotations {labels_layer.name!r} have shape {tuple(labels_layer.data.shape)} but the image "
            f"{image_layer.name!r} has shape {image_shape}: they must match."
        )
        return errors, warnings_
    summary = annotation_summary(labels_layer.data, mode)
    if summary["pixels"] == 0:
        errors.append(f"{labels_layer.name!r} is empty: paint background (label 1) and some cells (2, 3, ...) first.")
        return errors, warnings_
    if mode == "instances":
        if summary["background"] == 0:
            errors.append(f"{labels_layer.name!r} has no background (label 1): paint some background too.")
        if summary["objects"] == 0:
            errors.append(f"{labels_layer.name!r} has background only: paint at least one cell (label 2 or more).")
        elif summary["objects"] < 3:
            warnings_.append(f"only {summary['objects']} cell(s) painted: a few more make a much better model.")
    else:
        classes = np.unique(np.asarray(labels_layer.data)[np.asarray(labels_layer.data) > 0])
        if classes.size < 2:
            errors.append(f"{labels_layer.name!r} has one class only ({int(classes[0])}): paint at least two classes.")
    return errors, warnings_


def disconnect_all(pairs: Iterable[tuple[Any, Callable]]) -> None:
    """Disconnect ``(emitter, callback)`` pairs, ignoring those already gone."""
    for emitter, callback in pairs:
        try:
            emitter.disconnect(callback)
        except (TypeError, ValueError, RuntimeError):
            pass


# ------------------------------------------------------------------------------------------
# model files


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

    from ..model_files import load_model

    try:
        model = load_model(path, device=device)
    except (OSError, ValueError, RuntimeError) as exc:
        notify_error(f"Could not load the model {path}: {plain_error(exc)}")
        return None
    holder.set_model(model, describe_model(model, f"loaded from {Path(path).name}"))
    notify_info(f"Model loaded from {path}")
    return model
