"""Training runs (no Qt, no layers): :func:`train`, the blocking form of a :class:`~napari_unet.Trainer`,
and the interactive training job: what the Train widget runs in its worker
thread, and what a script can run to get the same live previews.

The main thread calls :meth:`TrainJob.set_preview_target`, :meth:`TrainJob.set_annotations` and
:meth:`TrainJob.stop`; the worker runs :meth:`TrainJob.run`, a generator of progress events and
previews (labels of the slice in view, its uncertainty, the weight map training uses).

A 3D network previews the plane in view from a slab of the stack around it (:func:`plane_slab`,
which the Predict widget's "current slice" of a 3D network uses too).
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable

import numpy as np

from ..common.axes import channels_last_to_first
from ..common.devices import ThreadTuner
from ..common.progress import drive
from ..config import TrainConfig
from ..model.fit import spatial_dims_for
from .events import TrainResult
from .trainer import Trainer

__all__ = ["train", "TrainJob", "entropy_map", "predict_plane", "plane_slab", "preload"]

# What the first TrainJob.run imports: torch's optimizer step imports torch._dynamo (and sympy)
# on its first call, previews import the labels code and scikit-image.
PRELOADED_MODULES = (
    "torch._dynamo", "scipy.ndimage", "edt", "skimage.measure", "skimage.morphology", "skimage.segmentation",
    "skimage.util", "skimage.util._remap", "napari_unet.dataset.augment", "napari_unet.model.unet",
    "napari_unet.labels.instances", "napari_unet.predict.tiling",
)


#: the longest training waits for the main thread to show its first preview (TrainJob.first_preview_shown)
FIRST_PREVIEW_WAIT_S = 2.0


def preload(names=PRELOADED_MODULES) -> None:
    """Import what a first :meth:`TrainJob.run` imports (about two seconds of imports), or the
    modules ``names``.

    An import holds Python's global lock for long stretches; run in the worker at Start, it
    stalls napari's event loop for most of a second. The Train widget calls this in a
    background thread when it opens, while the user paints."""
    import importlib

    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError:  # e.g. a private module another scikit-image version lacks
            continue
        for attribute in getattr(module, "__all__", ()):  # scikit-image imports its parts lazily
            getattr(module, attribute, None)


def entropy_map(probabilities: np.ndarray) -> np.ndarray:
    """Normalized entropy (0 = certain, 1 = uniform) of ``(n_classes, ...)`` probabilities."""
    p = np.clip(np.asarray(probabilities, dtype=np.float32), 1e-7, 1.0)
    n_classes = p.shape[0]
    return (-(p * np.log(p)).sum(axis=0) / math.log(max(2, n_classes))).astype(np.float32)


def predict_plane(model, plane: np.ndarray, device=None, normalize=True, context: str = "full") -> np.ndarray:
    """Softmax probabilities ``(n_classes, Y, X)`` of one plane (``(n_classes, Z, Y, X)`` of a
    slab, for a 3D network), leaving ``model``'s mode as it was.

    ``normalize``: as in :func:`napari_unet.predict_tiled` (e.g. the whole stack's ``(lows, highs)``);
    ``context``: a 3D network's tiles (:class:`~napari_unet.predict.options.PredictOptions`;
    ``"preview"`` for a preview of a slab).
    """
    from ..predict.tiling import predict_tiled
    from ..predict.volume import iter_predict_volume

    was_training = model.training
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = None
    try:
        if model.config.spatial_dims == 3:
            return drive(iter_predict_volume(model, plane, device=device, normalize=normalize, context=context))
        return predict_tiled(model, plane, device=device, normalize=normalize)
    finally:
        model.train(was_training)


def plane_slab(data, axes: str, index, depth: int, box=None, z_range=None) -> tuple[np.ndarray, str, int]:
    """The slab of the z-stack ``data`` around one of its planes, for a 3D network.

    ``axes``: of ``data`` (``"ZYX"``, ``"TZYX"``, ``"ZCYX"``, ``"ZYXC"``, ...); ``index``: the
    plane, one position per axis before Y and X (a channel axis among them keeps all its
    channels); ``depth``: the slab's z size (e.g. the training patch's), centred on the plane and
    kept inside the stack; ``box``: an optional ``(slice y, slice x)`` part of the plane;
    ``z_range``: ``(start, stop)``, these planes instead (e.g. a
    :func:`~napari_unet.predict.volume.slab_window`).
    Returns ``(slab, slab_axes, at)``: the slab as a numpy array, channels first (``"ZYX"`` or
    ``"CZYX"``), and the plane's position along its Z. ValueError when ``data`` has no Z axis.

    >>> stack = np.arange(10 * 4 * 4).reshape(10, 4, 4)
    >>> slab, slab_axes, at = plane_slab(stack, "ZYX", (8,), 4)
    >>> slab.shape, slab_axes, at, bool((slab[at] == stack[8]).all())
    ((4, 4, 4), 'ZYX', 2, True)
    """
    from ..predict.volume import slab_range

    index = tuple(int(i) for i in index)
    leading = axes[:len(index)]
    if "Z" not in leading:
        raise ValueError(f"a 3D network needs a z-stack; the image's axes are {axes!r} (no Z axis)")
    n_z = int(np.shape(data)[axes.index("Z")])
    z = index[leading.index("Z")]
    start, stop = slab_range(n_z, z, depth) if z_range is None else (int(z_range[0]), int(z_range[1]))
    if not 0 <= start <= z < stop <= n_z:
        raise ValueError(f"z_range {tuple(z_range)} must hold plane {z} inside the stack's {n_z} planes")
    size = stop - start
    plane_part = {"Y": box[0], "X": box[1]} if box is not None else {}
    take = []
    for position, name in enumerate(axes):
        if name == "Z":
            take.append(slice(start, start + size))
        elif position < len(index) and name != "C":
            take.append(index[position])  # e.g. the time point
        else:
            take.append(plane_part.get(name, slice(None)))
    kept = "".join(name for position, name in enumerate(axes)
                   if name in "ZC" or position >= len(index))
    slab_axes = "CZYX" if "C" in kept else "ZYX"
    slab = np.transpose(np.asarray(data[tuple(take)]), [kept.index(name) for name in slab_axes])
    return slab, slab_axes, z - start


def _unpack(target) -> tuple:
    """``(pair, plane index, box or None)`` of a preview target of two or three parts."""
    pair, index, *rest = target
    return pair, tuple(index), (tuple(rest[0]) if rest and rest[0] is not None else None)


class TrainJob:
    """State shared between the widget (main thread) and the training generator (worker).

    The main thread calls :meth:`set_preview_target`, :meth:`set_annotations` and :meth:`stop`
    (the trainer's own methods are thread-safe); the worker runs :meth:`run`.
    """

    def __init__(self, images, annotations, axes, config, model, *, preview_target, weight_map, uncertainty,
                 tune_threads: bool = True):
        self.images = images
        self.annotations = annotations
        self.axes = axes
        self.config = config
        self.model = model
        self.preview_target = preview_target  # (pair index, plane index[, (slice y, slice x)]) or None
        self.want_weight_map = weight_map
        self.want_uncertainty = uncertainty
        self.trainer = None
        self.device = None
        # on a CPU, train with the thread count that is fastest while the GUI shares the cores
        # (devices.ThreadTuner); thread_choices: what its probes measured
        self.tune_threads = tune_threads
        self.thread_choices: list = []
        self._stop = threading.Event()
        # set by the main thread once it has shown the first preview: until then (at most
        # FIRST_PREVIEW_WAIT_S) training waits, so that napari adds the preview layer without
        # training holding Python's lock (None: no wait, e.g. a script)
        self.first_preview_shown: threading.Event | None = None
        # a 3D network previews slabs of the stack: (target, the plane's z inside its slab) of the
        # region last handed out
        self.three_d = spatial_dims_for(config, model) == 3
        self.slab_plane = None

    def stop(self) -> None:
        self._stop.set()
        if self.first_preview_shown is not None:  # no waiting for a preview while stopping
            self.first_preview_shown.set()
        trainer = self.trainer
        if trainer is not None:
            trainer.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def set_annotations(self, index: int, annotations: np.ndarray) -> None:
        trainer = self.trainer
        if trainer is not None:
            trainer.set_annotations(index, annotations)
        self.annotations[index] = annotations

    def slab_depth(self) -> int:
        """The z size of a 3D network's preview slab: the training patch's."""
        if self.trainer is not None:
            return int(self.trainer.input_shape[0])
        if self.model is not None:
            from ..model.fit import default_tile_shape

            return int(default_tile_shape(self.model, self.config)[0])
        tile = self.config.tile_shape
        return int(tile[0]) if tile is not None and len(tile) == 3 else 16

    def preview_region(self, target):
        """The raw region ``(Y, X)`` / ``(C, Y, X)`` of ``target`` = (pair, plane index[, box]):
        the plane, or its part ``box`` (a ``(slice y, slice x)`` pair, e.g. the field of view).

        A 3D network's region is the slab ``(Z, Y, X)`` / ``(C, Z, Y, X)`` of :func:`plane_slab`
        around the plane (the training patch's z size); :attr:`slab_plane` remembers ``(target,
        the plane's z in the slab)``."""
        region, at = self._region(target)
        if at is not None:
            self.slab_plane = (target, at)
        return region

    def _region(self, target) -> tuple:
        """``(region, the plane's z in it)`` of :meth:`preview_region` (z: None but for a 3D network)."""
        if target is None:
            return None, None
        pair, index, box = _unpack(target)
        image, axes = self.images[pair], self.axes[pair]
        if self.three_d:
            if "Z" not in axes[:len(index)]:
                return None, None
            slab, _slab_axes, at = plane_slab(image, axes, index, self.slab_depth(), box)
            return slab, at
        plane = image[tuple(index)] if index else image
        plane, plane_axes = channels_last_to_first(plane, axes[len(index):])
        if plane_axes not in ("YX", "CYX"):
            return None, None
        return np.asarray(plane[(Ellipsis, *box)] if box is not None else plane), None

    def set_preview_target(self, target) -> None:
        self.preview_target = target
        trainer = self.trainer
        if trainer is not None:
            self._set_trainer_preview(trainer, target)

    def _set_trainer_preview(self, trainer, target) -> None:
        """Preview ``target``'s plane normalized as training normalizes it (whole-image percentiles)."""
        region = self.preview_region(target)
        normalize = True
        if region is not None:
            normalize = trainer.intensity_range(target[0]) or True
        trainer.set_preview(region, normalize=normalize)

    def run(self):
        """Generator of ``("started", info)``, ``("progress", TrainEvent)`` and
        ``("preview", dict)``; returns the trainer (its model is the best one)."""
        target = self.preview_target
        trainer = Trainer(self.images, self.annotations, config=self.config, model=self.model, axes=self.axes)
        self.trainer = trainer
        self._set_trainer_preview(trainer, target)
        if self.stopping:
            trainer.stop()
        self.device = trainer.device
        yield ("started", {"device": trainer.device})
        tuner = ThreadTuner() if trainer.device.type == "cpu" and self.tune_threads else None
        previous, plain = None, True  # the last step's time; whether nothing but the step followed it
        waited = self.first_preview_shown is None  # for the first preview to be shown
        try:
            for event in trainer.run():
                if event.kind == "step":
                    if tuner is not None and previous is not None and plain:
                        tuner.observe(event.elapsed_s - previous)
                    previous, plain = event.elapsed_s, True
                else:
                    plain = False
                if event.kind == "preview" and event.preview is not None:
                    yield ("preview", self._preview_of(event.preview, self.preview_target, event.iteration))
                    if not waited:
                        waited = True
                        self.first_preview_shown.wait(FIRST_PREVIEW_WAIT_S)
                else:
                    yield ("progress", event)
        finally:
            if tuner is not None:
                tuner.restore()
                self.thread_choices = tuner.choices
        # the kept (best) model, on the slice in view now
        target = self.preview_target
        region, at = self._region(target)
        if region is not None and trainer.iteration > 0:
            probabilities = predict_plane(trainer.model, region, trainer.device,
                                          normalize=trainer.intensity_range(target[0]) or True, context="preview")
            yield ("preview", self._preview_of(probabilities, target, trainer.iteration, (target, at)))
        return trainer

    def _preview_of(self, probabilities, target, iteration: int, slab_plane=None) -> dict:
        """:meth:`preview_layers` of predicted ``probabilities``; a 3D network's are those of a
        slab (``slab_plane``: its ``(target, plane z)``, by default the one last handed out), of
        which the plane in view is kept."""
        slab_plane = slab_plane if slab_plane is not None else self.slab_plane
        if self.three_d and slab_plane is not None and slab_plane[1] is not None:
            target, at = slab_plane
            probabilities = np.asarray(probabilities)[:, at]
        return self.preview_layers(probabilities, target, iteration)

    def preview_layers(self, probabilities, target, iteration: int) -> dict:
        """Labels (and optional uncertainty / weight map) of one previewed plane."""
        from ..labels.instances import label_options, to_labels

        pair, index, box = _unpack(target)
        model = self.trainer.model if self.trainer is not None else self.model
        out = {
            "pair": pair,
            "index": index,
            "box": box,
            "iteration": iteration,
            "labels": to_labels(probabilities, **label_options(model, self.config.mode)),
        }
        if self.want_uncertainty:
            out["uncertainty"] = entropy_map(probabilities)
        if self.want_weight_map:
            annotations = self.annotations[pair]
            plane = np.asarray(annotations[tuple(index)]) if index else np.asarray(annotations)
            if box is not None:
                plane = plane[box]
            if np.any(plane):
                if self.trainer is not None:  # the weights training uses (gaps, ring, borders)
                    out["weight_map"] = self.trainer.targets_for(plane).weights
                else:
                    from ..dataset.training_data import config_border_sigma
                    from ..annotations.weights import weight_map

                    cfg = self.config
                    out["weight_map"] = weight_map(plane, w0=cfg.w0, sigma=config_border_sigma(cfg, plane),
                                                   mode=cfg.mode)
        return out


def train(images, annotations, *, config: TrainConfig | None = None, model=None,
          progress: Callable[[int, int], Any] | None = None, axes=None, preview=None,
          resume=None) -> TrainResult:
    """Train a U-Net on sparse annotations; the blocking form of :class:`Trainer`.

    Parameters
    ----------
    images, annotations, config, model, axes, preview
        As for :class:`Trainer`.
    progress : callable, optional
        ``progress(done, total)`` after every iteration: iterations done and
        ``config.iterations``; with only a time limit, seconds elapsed and ``time_limit_s``.
    resume : path, optional
        A checkpoint to continue (see :meth:`Trainer.resume`).

    Returns
    -------
    TrainResult
        ``model`` (with its metadata; which weights: ``TrainConfig.keep_model``) and ``history``.
    """
    if resume is not None:
        if model is not None:
            raise ValueError("give model or resume, not both")
        trainer = Trainer.resume(resume, images, annotations, config=config, axes=axes, preview=preview)
    else:
        trainer = Trainer(images, annotations, config=config, model=model, axes=axes, preview=preview)
    cfg = trainer.config
    for event in trainer.run():
        if progress is not None and event.kind in ("step", "done"):
            if cfg.iterations is not None:
                progress(event.iteration, int(cfg.iterations))
            else:
                progress(int(min(event.elapsed_s, cfg.time_limit_s)), int(math.ceil(cfg.time_limit_s)))
    return TrainResult(model=trainer.model, history=trainer.history, stopped=trainer.stopped)
