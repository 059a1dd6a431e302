"""Running the core's generators off the GUI thread (napari thread workers), with a synchronous
fallback for tests and headless use (NAPARI_UNET_NOTHREADS=1)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton

from .controls import StatusLine, free_device_memory
from .model_box import ask_model_path, load_model_into
from .notify import JobError, notify_error, plain_error

logger = logging.getLogger(__name__)

#: what a first Predict imports (its worker, and napari's first Labels layer: pandas, 0.17 s)
PREDICT_MODULES = ("scipy.ndimage", "edt", "skimage.measure", "skimage.morphology", "skimage.segmentation",
                   "skimage.transform", "napari_unet.labels.instances", "napari_unet.predict.tiling", "pandas")
_preloaded: set = set()  # the modules asked for, once per process
_preloading: list = []  # their background threads


def start_preloading(names=None) -> None:
    """Import in a background thread what training (``names`` None:
    :data:`napari_unet.training.job.PRELOADED_MODULES`) or prediction (:data:`PREDICT_MODULES`)
    needs, each module once per process; the Train and Predict widgets call it when they open. At
    Start or Predict, the same imports in the worker would stall the window for most of a second
    (:func:`napari_unet.training.job.preload`), and so would napari's first Labels layer on the
    main thread."""
    from ...training.job import PRELOADED_MODULES, preload

    names = [n for n in (PRELOADED_MODULES if names is None else names) if n not in _preloaded]
    if not names:
        return
    _preloaded.update(names)

    def run():
        try:
            preload(names)
        except Exception:  # noqa: BLE001 - the job imports again and reports a real failure
            logger.debug("preloading failed", exc_info=True)

    thread = threading.Thread(target=run, name="napari-unet preload", daemon=True)
    _preloading.append(thread)
    thread.start()


def wait_for_preloading(timeout: float | None = None) -> None:
    """Wait for the background imports :func:`start_preloading` started (benchmarks, tests)."""
    for thread in list(_preloading):
        thread.join(timeout)

NOTHREADS_ENV = "NAPARI_UNET_NOTHREADS"


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
        """Add ``self.progress`` (reading "idle") and the word-wrapped ``self.status_label`` (a :class:`StatusLine`).

        ``value=None`` leaves the bar reset (no text shown until the first run).
        """
        self.progress = QProgressBar()
        self.progress.setRange(0, maximum)
        if value is not None:
            self.progress.setValue(value)
        self.progress.setFormat("idle")
        layout.addWidget(self.progress)
        self.status_label = StatusLine()
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
