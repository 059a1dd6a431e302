"""Training: painted strokes -> a U-Net, as a generator of progress events.

>>> trainer = Trainer([image], [annotations], config=TrainConfig(iterations=500))  # doctest: +SKIP
>>> for event in trainer.run():                                                    # doctest: +SKIP
...     print(event.iteration, event.loss)
>>> save_model(trainer.model, "cells.unet")                                        # doctest: +SKIP

The loss is the paper's pixel-wise softmax + cross-entropy, weighted by the weight map of
:func:`napari_unet.make_targets` (class balance + the border term between touching cells).
Unannotated pixels have weight 0 and contribute nothing, neither to the loss nor to the
gradient. The weighted sum is divided by the sum of the weights in the batch (the usual
"weighted mean"), so the loss scale does not depend on how much was painted.

Validation holds out part of the annotated pixels (square blocks, so held-out pixels are not
simply neighbours of training pixels), never trains on them, and reports the loss and the
foreground IoU there. Training ends with the best weights by validation loss (the last ones
without validation); ``TrainConfig.keep_model="last"`` keeps the final ones of a run that
spends its whole budget.
With ``TrainConfig.ema_decay`` the weights are also averaged along the way (Polyak averaging);
validation, previews and the kept model then use the average. It is off by default (no
measurable gain in quality, see benchmarks/README.md), but it smooths the live preview. Checkpoints are model files
(:func:`napari_unet.load_model` reads them) with the optimizer state inside, written to a
temporary file and renamed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..config import TrainConfig
from ..dataset.training_data import TrainingData
from ..dataset.volume_data import VolumeData
from ..model.fit import (classes_for_training, default_batch_size, default_tile_shape, kept_weights, model_config_for,
                         spatial_dims_for)
from ..model.metadata import set_prediction_metadata, training_summary
from .checkpoints import checkpoint_path, restore_trainer, trainer_checkpoint
from .events import TrainEvent
from .kept_weights import BestWeights, WeightAverage
from .loss import validation_scores
from .schedule import IterationRate, PreviewClock, budget_end, budget_eta, budget_left, budget_progress, schedule_factor
from .step import TrainingStep

__all__ = [
    "Trainer",
]

logger = logging.getLogger(__name__)

#: the reasons a run ends with its budget spent (a stopped run keeps its best weights)
_BUDGET_SPENT = ("finished", "time limit reached")


def _as_list(value, name: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if value is None:
        raise ValueError(f"{name} is required")
    return [value]


def _inputs(images, annotations, axes) -> tuple[list, list, list]:
    """``images``, ``annotations`` and ``axes`` as three lists of the same length."""
    images = _as_list(images, "images")
    annotations = _as_list(annotations, "annotations")
    if len(images) != len(annotations):
        raise ValueError(f"got {len(images)} image(s) but {len(annotations)} annotation(s); give one annotation per image")
    if not images:
        raise ValueError("no images given")
    if axes is None or isinstance(axes, str):
        return images, annotations, [axes] * len(images)
    axes_list = list(axes)
    if len(axes_list) != len(images):
        raise ValueError(f"got {len(axes_list)} axes strings for {len(images)} images")
    return images, annotations, axes_list


def _kept_normalization(model) -> dict | None:
    """The normalization of a model to train on (kept), None for a new network."""
    if model is not None and isinstance(getattr(model, "metadata", None), dict):
        return model.metadata.get("normalization")
    return None


def _network(model, config: TrainConfig, data: TrainingData, device):
    """``(n_classes, network on device, its previous training summary)``: ``model`` to train on
    (checked against the data), or a new network seeded by ``config.seed``."""
    import torch

    from ..model.unet import UNet

    if model is not None and not isinstance(model, UNet):
        raise TypeError(f"model must be a napari_unet.UNet, got {type(model).__name__}")
    n_classes = classes_for_training(config, in_channels=data.channels, max_class=data.max_class, model=model)
    if model is None:
        torch.manual_seed(config.seed)
        model = UNet.from_config(model_config_for(config, data.channels, n_classes))
        model.metadata = {}
        return n_classes, model.to(device), None
    model.metadata = dict(model.metadata or {})
    return n_classes, model.to(device), model.metadata.get("training")


def _check_memory(model, input_shape, batch_size: int, device) -> None:
    """Refuse a tile and batch whose training step cannot fit in memory (before any work)."""
    import torch

    from ..common.memory import available_memory
    from ..predict.plan import training_bytes_per_pixel

    need = math.prod(input_shape) * training_bytes_per_pixel(model) * batch_size
    room = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else available_memory()
    if room is not None and need > room:
        raise MemoryError(f"training tiles of {' x '.join(str(s) for s in input_shape)} pixels in batches of "
                          f"{batch_size} need about {need / 2**30:.1f} GiB but {room / 2**30:.1f} GiB are free "
                          f"on {device}; lower batch_size or tile_shape")


class _Preview:
    """The raw 2D region a run predicts now and then, set from any thread, and when it is due:
    every ``config.preview_every`` iterations and after the last, or by time
    (``config.preview_every_s``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.region, self.normalize = None, True
        self.clock: PreviewClock | None = None
        self.every = 0

    def start(self, config: TrainConfig, now: float) -> None:
        """A run starts at ``now``."""
        self.every = config.preview_every
        self.clock = PreviewClock(config.preview_every_s, now) if config.preview_every_s is not None else None

    def due(self, iteration: int, now: float, last: bool) -> bool:
        """Whether to predict the region after ``iteration`` (``last``: the run's last one)."""
        if self.region is None or not (self.every or self.clock is not None):
            return False
        if self.clock is not None:  # by time: no extra preview at the end (the Train widget shows the kept model's)
            return self.clock.due(now)
        return last or iteration % self.every == 0

    def done(self, started: float, ended: float) -> None:
        """A preview (prediction, and what the consumer did with it) ran from ``started`` to ``ended``."""
        if self.clock is not None:
            self.clock.done(started, ended)

    def set(self, region, normalize) -> None:
        with self._lock:
            self.region = None if region is None else np.asarray(region)
            self.normalize = normalize

    def get(self):
        """``(region, normalize)``, None for no region."""
        with self._lock:
            return self.region, self.normalize


def _predict_region(model, region, normalize, *, device, train_tile, average, stop):
    """Probabilities of ``region`` by ``model`` (its averaged weights, when ``average`` holds
    any): a plane in tiles a few times the training tile (fast and within memory on a CPU), a
    3D network's slab with a preview's context (``context="preview"``). None when ``stop()``
    turns true."""
    import torch

    from ..predict.tiling import iter_predict_tiled
    from ..predict.volume import iter_predict_volume

    with torch.no_grad(), average.applied(model):
        if model.config.spatial_dims == 3:
            gen = iter_predict_volume(model, region, device=device, normalize=normalize, context="preview")
        else:
            tile = tuple(int(s) for s in model.valid_input_shape(tuple(max(640, 2 * s) for s in train_tile)))
            gen = iter_predict_tiled(model, region, device=device, tile_shape=tile, normalize=normalize)
        return _run_unless(gen, stop)


def _done_message(reason: str, best: BestWeights, kept_loss: float | None) -> str:
    """How a run ended and which weights it kept."""
    if kept_loss is not None and best.kept == "best":
        return reason + f"; kept the model of iteration {best.iteration} (validation loss {kept_loss:.4f})"
    if kept_loss is not None:
        return reason + (f"; kept the final model (validation loss {kept_loss:.4f}; lowest "
                         f"{best.loss:.4f} at iteration {best.iteration})")
    return reason


def _done_event(trainer: "Trainer", reason: str, loss, it_per_s, elapsed: float) -> TrainEvent:
    """The last event of a run: how it ended and the validation scores of the weights it kept."""
    kept_loss, kept_iou = trainer.best.kept_scores(trainer.iteration)
    return TrainEvent("done", iteration=trainer.iteration, total_iterations=trainer.total_iterations, loss=loss,
                      val_loss=kept_loss, val_iou=kept_iou, it_per_s=it_per_s, eta_s=0.0, elapsed_s=elapsed,
                      message=_done_message(reason, trainer.best, kept_loss), best_val_loss=trainer.best.loss)


def _run_unless(gen, stop: Callable[[], bool]):
    """The return value of generator ``gen``; None (the generator closed) when ``stop()`` turns
    true between two of its steps."""
    try:
        while True:
            next(gen)
            if stop():
                gen.close()
                return None
    except StopIteration as done:
        return done.value


# ---------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Train a U-Net on images with sparse annotations; :meth:`run` yields :class:`TrainEvent`.

    Parameters
    ----------
    images : array or list of arrays
        2D images ``(Y, X)`` / ``(C, Y, X)`` or stacks (``axes`` names them). Several images
        may have different sizes. A 3D network (``TrainConfig(preset="fast3d")`` or a
        ``ModelConfig(spatial_dims=3)``) trains on z-stacks from their painted slices
        (:class:`napari_unet.dataset.volume_data.VolumeData`); a 2D one on the painted planes.
    annotations : array or list of arrays
        One per image, the same shape without the channel axis: 0 = not annotated,
        1 = background, 2, 3, ... = one id per cell (instance mode) or 1..K = classes.
        Unannotated planes of a stack are skipped.
    config : TrainConfig, optional
        Everything else (mode, network preset, budget, optimizer, ...).
    model : UNet, optional
        Continue training these weights (the interactive loop: paint more, train on). Its
        architecture and normalization are kept.
    axes : str or list of str, optional
        Axes of each image, e.g. ``"YX"``, ``"CYX"``, ``"ZYX"``, ``"TZCYX"``.
    preview : array, optional
        A 2D region ``(Y, X)`` or ``(C, Y, X)`` of raw image to predict every
        ``config.preview_every`` iterations (see :meth:`set_preview`).

    Raises
    ------
    ValueError
        Before any training: mismatched shapes, no annotation, only one class painted, a model
        whose channels or classes do not fit.
    """

    def __init__(self, images, annotations, *, config: TrainConfig | None = None, model=None, axes=None, preview=None):
        from ..common.devices import select_device

        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        cfg = self.config
        images, annotations, axes_list = _inputs(images, annotations, axes)
        self._stop_event = threading.Event()
        self._preview = _Preview()
        self.history: list[dict] = []
        self.iteration = 0
        self.elapsed_before = 0.0  # seconds trained before this run (a resumed checkpoint's)
        # the clock of time limits, it/s and ETA; a benchmark on a shared machine may swap in a
        # CPU-time clock (e.g. ``lambda: time.process_time() / n_threads``)
        self.clock: Callable[[], float] = time.perf_counter
        self.best = BestWeights()
        self.stopped = False
        self._finished = False
        self.device = select_device(cfg.device)

        # --- checks and training planes, all before any training; the model, its tile, the optimizer
        data_kind = VolumeData if spatial_dims_for(cfg, model) == 3 else TrainingData
        self.data = data_kind(images, annotations, axes_list, config=cfg, normalization=_kept_normalization(model))
        self.n_classes, self.model, self.previous_training = _network(model, cfg, self.data, self.device)
        # instance mode with a third class, the cell border (a continued model keeps its kind)
        self.borders = cfg.mode == "instances" and self.n_classes == 3
        self.normalization = self.data.normalization
        self.input_shape = default_tile_shape(self.model, cfg)
        self.output_shape = tuple(int(s) for s in self.model.output_shape(self.input_shape))
        self.batch_size = default_batch_size(self.model, cfg)
        self.keep_model, ema_decay = kept_weights(self.model, cfg)
        self.average = WeightAverage(ema_decay)
        _check_memory(self.model, self.input_shape, self.batch_size, self.device)
        self._set_metadata(iterations=0, elapsed=None)  # the training summary is written when run() ends
        self._build_data(cfg.seed)
        if preview is not None:
            self.set_preview(preview)
        self.training_step = TrainingStep(self.model, cfg, self.device)

    best_val_loss = property(lambda self: self.best.loss, doc="The lowest validation loss so far.")
    best_val_iou = property(lambda self: self.best.iou, doc="The validation IoU of the best weights.")
    best_iteration = property(lambda self: self.best.iteration, doc="The iteration of the best weights.")
    kept = property(lambda self: self.best.kept, doc='"best" or "last": the weights the finished model holds.')
    kept_iteration = property(lambda self: self.best.kept_iteration, doc="The iteration of the kept weights.")
    optimizer = property(lambda self: self.training_step.optimizer, doc="The torch optimizer.")

    # ------------------------------------------------------------------ inputs

    def targets_for(self, ann):
        """Training targets (:class:`napari_unet.annotations.targets.Targets`) of one 2D annotation plane, as this
        trainer makes them (gaps, ring, borders and loss weights of its config and model)."""
        return self.data.targets_for(ann, n_classes=self.n_classes, borders=self.borders)

    sampler = property(lambda self: self.data.sampler, doc="The tile sampler of the training pixels.")
    val_sampler = property(lambda self: self.data.val_sampler,
                           doc="The tile sampler of the held-out validation pixels (None when nothing is held out).")

    def _build_data(self, seed: int):
        self.data.build(seed=seed, n_classes=self.n_classes, borders=self.borders, input_shape=self.input_shape,
                        output_shape=self.output_shape, batch_size=self.batch_size, device=self.device)
        self._update_cell_diameter()

    def _update_cell_diameter(self):
        """Record the median diameter of the painted cells (instance mode) in the model metadata:
        prediction scales its split of touching cells and its size filter with it. A model
        continued with annotations that paint no cell keeps the diameter it had."""
        diameter = self.data.cell_diameter()
        if diameter is not None:
            self.model.metadata["cell_diameter"] = round(float(diameter), 3)
            if self.config.pixel_size is not None:  # in micrometres too: right on any grid
                self.model.metadata["cell_diameter_um"] = round(float(diameter) * math.sqrt(
                    self.config.pixel_size[-2] * self.config.pixel_size[-1]), 4)

    def set_annotations(self, index: int, annotations) -> None:
        """Swap in fresh annotations for image ``index`` (thread-safe; applied at the next iteration).

        Shapes are checked at once (ValueError); the validation split keeps its held-out blocks,
        and the best-model bookkeeping restarts, since the validation pixels changed.
        """
        self.data.set_annotations(index, annotations)

    def _apply_pending(self):
        if not self.data.apply_pending(seed=self.config.seed + self.iteration):
            return
        self._update_cell_diameter()
        # the validation pixels changed: earlier losses and the model kept are not comparable
        self.best.forget()
        logger.info("annotations updated at iteration %d", self.iteration)

    def set_preview(self, image_region, normalize=True) -> None:
        """Predict this raw 2D region ``(Y, X)`` / ``(C, Y, X)`` every ``config.preview_every`` iterations.

        ``normalize`` as in :func:`napari_unet.predict_tiled`: True normalizes the region with its
        own percentiles; ``(lows, highs)`` with given ones, e.g. those of the whole stack the
        region is a plane of (:meth:`intensity_range`), as training normalizes it.
        """
        self._preview.set(image_region, normalize)

    def intensity_range(self, index: int):
        """``(lows, highs)`` that training maps to 0 and 1 in image ``index`` (None: no normalization)."""
        return self.data.intensity_range(index)

    def stop(self) -> None:
        """Ask :meth:`run` to end (thread-safe); it ends within about a second keeping the best model."""
        self._stop_event.set()

    total_iterations = property(lambda self: None if self.config.iterations is None else int(self.config.iterations),
                                doc="The iteration budget (None: a time limit only).")

    # ------------------------------------------------------------------ the loop

    def _step(self, batch) -> float:
        """One optimization step on ``batch``, then the weight average follows; returns the loss."""
        loss = self.training_step(self.model, batch)
        self.average.update(self.model, self.iteration)
        return loss

    def run(self) -> Iterator[TrainEvent]:
        """Train, yielding a :class:`TrainEvent` every ``config.log_every`` iterations and at
        validations, previews and checkpoints; the last event has ``kind == "done"``.

        Closing the generator early (or :meth:`stop`) also ends training and restores the best
        model.
        """
        if self._finished:
            raise RuntimeError("this Trainer has finished; make a new one (pass model=trainer.model to train on)")
        t0 = self.clock()
        self._last_checkpoint = t0
        self._preview.start(self.config, t0)
        rate = IterationRate(t0, self.iteration)
        loss = reason = None
        try:
            while True:
                elapsed = self.elapsed_before + self.clock() - t0
                reason = "stopped" if self._stop_event.is_set() else budget_end(self.config, self.iteration, elapsed)
                if reason is not None:
                    break
                self._apply_pending()
                lr = self.training_step.base_lr * schedule_factor(self.config.lr_schedule,
                                                                  budget_progress(self.config, self.iteration, elapsed))
                self.training_step.set_learning_rate(lr)
                loss = self._step(self.sampler.sample(self.batch_size, device=self.device))
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss became {loss} at iteration {self.iteration + 1}; lower the learning rate"
                    )
                self.iteration += 1
                now = self.clock()
                elapsed = self.elapsed_before + now - t0
                event = self._record(loss, lr, elapsed, rate.update(now, self.iteration))
                yield from self._reports(event, elapsed)
        except (GeneratorExit, KeyboardInterrupt):
            reason = "stopped"  # closed early or Ctrl-C: the same end as stop()
            raise
        finally:
            # also runs when the consumer closes the generator early
            elapsed = self.elapsed_before + self.clock() - t0
            if not self._finished:
                self.stopped = reason == "stopped"
                self._finish(elapsed, budget_used=reason in _BUDGET_SPENT)
        if self.config.checkpoint_dir:
            self.save_checkpoint(elapsed=elapsed)
        yield _done_event(self, reason, loss, rate.value, elapsed)

    def _record(self, loss: float, lr: float, elapsed: float, it_per_s: float) -> dict:
        """Add the iteration just done to the history; the fields of its events."""
        self.history.append({"iteration": self.iteration, "loss": loss, "learning_rate": lr, "elapsed_s": elapsed})
        return dict(iteration=self.iteration, total_iterations=self.total_iterations, loss=loss, it_per_s=it_per_s,
                    eta_s=budget_eta(self.config, self.iteration, elapsed, it_per_s), elapsed_s=elapsed,
                    learning_rate=lr, best_val_loss=self.best.loss)

    def _reports(self, event: dict, elapsed: float) -> Iterator[TrainEvent]:
        """The events of the iteration just done: its step, then validation, preview and
        checkpoint when they are due (the last iteration validates and previews)."""
        cfg = self.config
        if self.iteration % max(1, cfg.log_every) == 0:
            yield TrainEvent("step", **event)
        last = not budget_left(cfg, self.iteration, elapsed)
        if self.data.val_batches and (self.iteration % max(1, cfg.validate_every) == 0 or last):
            scores = self._validate()
            if scores is None:  # stopped during validation
                return
            val_loss, val_iou = scores
            self.history[-1].update(val_loss=val_loss, val_iou=val_iou)
            event.update(best_val_loss=self.best.loss)
            yield TrainEvent("validation", val_loss=val_loss, val_iou=val_iou, **event)
        if self._preview.due(self.iteration, self.clock(), last):
            started = self.clock()
            probabilities = self._predict_preview()
            if probabilities is not None:
                yield TrainEvent("preview", preview=probabilities, **event)
            self._preview.done(started, self.clock())  # the cost includes what the consumer did (labels)
        if cfg.checkpoint_dir and self.clock() - self._last_checkpoint >= cfg.checkpoint_every_s:
            path = self.save_checkpoint(elapsed=elapsed)
            self._last_checkpoint = self.clock()
            yield TrainEvent("checkpoint", message=str(path), **event)

    def _finish(self, elapsed: float, *, budget_used: bool = False):
        self._finished = True
        self.elapsed_before = elapsed
        keep_last = budget_used and self.keep_model == "last"  # stopped early: the best
        self.best.keep(self.model, self.average, self.iteration, keep_last=keep_last)
        self.model.eval()
        self._set_metadata(iterations=self.iteration, elapsed=elapsed)

    # ------------------------------------------------------------------ validation / preview

    def _validate(self):
        """Loss and foreground IoU on the held-out pixels; keeps the best weights. None when stopped."""
        with self.average.applied(self.model):
            scores = validation_scores(self.model, self.data.val_batches, self.n_classes,
                                       amp_dtype=self.training_step.amp_dtype, stop=self._stop_event.is_set)
        if scores is None:
            return None
        val_loss, val_iou = scores
        self.best.record(self.iteration, val_loss, val_iou, self.model, self.average)
        return val_loss, val_iou

    def _predict_preview(self):
        region, normalize = self._preview.get()
        if region is None:
            return None
        self.model.eval()
        self._set_metadata(iterations=self.iteration, elapsed=None)
        return _predict_region(self.model, region, normalize, device=self.device, train_tile=self.input_shape,
                               average=self.average, stop=self._stop_event.is_set)

    # ------------------------------------------------------------------ metadata / checkpoints

    def _set_metadata(self, *, iterations: int, elapsed: float | None):
        """What prediction needs into the model's metadata; with ``elapsed``, the training summary."""
        set_prediction_metadata(self.model, self.config, n_classes=self.n_classes, borders=self.borders,
                                normalization=self.normalization, input_shape=self.input_shape,
                                output_shape=self.output_shape)
        if elapsed is not None:
            self.model.metadata["training"] = training_summary(self, iterations=iterations, elapsed=elapsed)

    def save_checkpoint(self, path=None, *, elapsed: float | None = None) -> Path:
        """Write model + optimizer + progress to ``path`` (default ``checkpoint_dir/checkpoint.unet``),
        atomically. The file is also a model file that :func:`napari_unet.load_model` reads."""
        from ..files.safe_write import atomic_write_bytes

        path = checkpoint_path(self.config, path)
        elapsed = self.elapsed_before if elapsed is None else elapsed
        self._set_metadata(iterations=self.iteration, elapsed=elapsed)
        return atomic_write_bytes(path, trainer_checkpoint(self, elapsed))

    @classmethod
    def resume(cls, path, images, annotations, *, config: TrainConfig | None = None, axes=None, preview=None) -> "Trainer":
        """A Trainer that continues a checkpoint written by :meth:`save_checkpoint`.

        ``config`` replaces the stored one (e.g. to raise ``iterations``); the iteration count,
        optimizer state, best model and history continue. The tile sampler restarts from a
        seed derived from the iteration, so a resumed run is reproducible but not bit-identical
        to an uninterrupted one.
        """
        from .checkpoints import read_checkpoint

        model, state, extra_tensors, what = read_checkpoint(path)
        config = config if config is not None else TrainConfig.from_dict(state["config"])
        shifted = dataclasses.replace(config, seed=int(config.seed) + int(state["iteration"]))
        trainer = cls(images, annotations, config=shifted, model=model, axes=axes, preview=preview)
        restore_trainer(trainer, state, extra_tensors, what)
        trainer.config = dataclasses.replace(config, seed=int(config.seed))  # the original seed in the stored config
        return trainer
