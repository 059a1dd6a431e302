"""AnnotationSync: the annotations painted while a training runs, handed to its job.

Each painted annotation layer marks its pair as changed; on the main thread, at most every
``SYNC_EVERY_S`` seconds, the changed annotations go to the job (``TrainJob.set_annotations``).
Annotations that cannot train (e.g. the only cell erased) wait, with one warning, and the job
keeps training on the previous ones.
"""

from __future__ import annotations

import time

import numpy as np

from ..shared.layers import disconnect_all, layer_annotation_problems
from ..shared.notify import notify_warning, plain_error

# hand freshly painted annotations to the trainer at most this often
SYNC_EVERY_S = 1.0


class AnnotationSync:
    """Follows the annotation layers of the ``(image, labels)`` pairs of one training."""

    def __init__(self):
        self.pairs: list = []
        self._connections: list = []
        self._dirty: set[int] = set()
        self._warned: set[int] = set()
        self._last_sync = 0.0

    def follow(self, pairs) -> None:
        """Follow the paint and data events of the annotation layers of ``pairs`` (only)."""
        self.disconnect()
        self.pairs = list(pairs)
        self._dirty.clear()
        self._warned = set()
        for index, (_, labels) in enumerate(self.pairs):
            def callback(event=None, index=index):
                self._dirty.add(index)

            for emitter in (labels.events.paint, labels.events.data):
                emitter.connect(callback)
                self._connections.append((emitter, callback))

    def disconnect(self) -> None:
        disconnect_all(self._connections)
        self._connections = []

    def sync(self, job, force: bool = False) -> None:
        """Hand freshly painted annotations to ``job`` (main thread; at most every
        ``SYNC_EVERY_S`` seconds unless ``force``)."""
        if job is None or not self._dirty:
            return
        if not force and time.monotonic() - self._last_sync < SYNC_EVERY_S:
            return
        for index in sorted(self._dirty):
            image, labels = self.pairs[index]
            errors, _ = layer_annotation_problems(image, labels, job.config.mode)
            if errors:
                # keep training on the previous annotations until they are usable again
                if index not in self._warned:
                    self._warned.add(index)
                    notify_warning("Still training on the previous annotations: " + " ".join(errors))
                continue
            self._warned.discard(index)
            try:
                job.set_annotations(index, np.array(labels.data, copy=True))
            except (ValueError, TypeError) as exc:
                notify_warning(f"The new annotations of {labels.name!r} were not used: {plain_error(exc)}")
        self._dirty.clear()
        self._last_sync = time.monotonic()
