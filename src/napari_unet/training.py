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

from ._version import __version__
from .averaging import WeightAverage
from .checkpoints import CHECKPOINT_NAME, checkpoint_run_dir
from .config import TrainConfig
from .events import TrainEvent, TrainResult
from .loss import validation_scores, weighted_cross_entropy
from .model_fit import classes_for_training, default_tile_shape, model_config_for
from .schedule import budget_eta, budget_left, budget_progress, learning_rate, schedule_factor
from .training_data import TrainingData

__all__ = [
    "Trainer",
    "TrainEvent",
    "TrainResult",
    "weighted_cross_entropy",
    "default_tile_shape",
    "checkpoint_run_dir",
    "CHECKPOINT_NAME",
]

logger = logging.getLogger(__name__)


def _as_list(value, name: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if value is None:
        raise ValueError(f"{name} is required")
    return [value]


# ---------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Train a U-Net on images with sparse annotations; :meth:`run` yields :class:`TrainEvent`.

    Parameters
    ----------
    images : array or list of arrays
        2D images ``(Y, X)`` / ``(C, Y, X)`` or stacks (``axes`` names them). Several images
        may have different sizes.
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
        import torch

        from .devices import select_device
        from .model import UNet

        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        cfg = self.config
        images = _as_list(images, "images")
        annotations = _as_list(annotations, "annotations")
        if len(images) != len(annotations):
            raise ValueError(f"got {len(images)} image(s) but {len(annotations)} annotation(s); give one annotation per image")
        if not images:
            raise ValueError("no images given")
        if axes is None or isinstance(axes, str):
            axes_list = [axes] * len(images)
        else:
            axes_list = list(axes)
            if len(axes_list) != len(images):
                raise ValueError(f"got {len(axes_list)} axes strings for {len(images)} images")
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._preview = None
        self.history: list[dict] = []
        self.device = select_device(cfg.device)

        # --- checks and training planes, all before any training
        kept_norm = None
        if model is not None and isinstance(getattr(model, "metadata", None), dict):
            kept_norm = model.metadata.get("normalization")  # keep the model's normalization
        self.data = TrainingData(images, annotations, axes_list, config=cfg, normalization=kept_norm)
        in_channels = self.data.channels
        if model is not None and not isinstance(model, UNet):
            raise TypeError(f"model must be a napari_unet.UNet, got {type(model).__name__}")
        n_classes = classes_for_training(cfg, in_channels=in_channels, max_class=self.data.max_class, model=model)
        self.n_classes = n_classes
        # instance mode with a third class, the cell border (a continued model keeps its kind)
        self.borders = cfg.mode == "instances" and n_classes == 3

        # --- the model
        if model is None:
            torch.manual_seed(cfg.seed)
            model = UNet.from_config(model_config_for(cfg, in_channels, n_classes))
            model.metadata = {}
            self._previous_training = None
        else:
            model.metadata = dict(model.metadata or {})
            self._previous_training = model.metadata.get("training")
        self.normalization = self.data.normalization
        self.model = model.to(self.device)
        self.input_shape = default_tile_shape(self.model, cfg)
        self.output_shape = tuple(int(s) for s in self.model.output_shape(self.input_shape))
        self.batch_size = int(cfg.batch_size)
        self._check_memory()
        self._set_metadata(iterations=0, elapsed=None)  # the training summary is written when run() ends

        # --- data: targets, validation split, sampler
        self._build_data(cfg.seed)
        if preview is not None:
            self.set_preview(preview)

        # --- optimizer
        self.base_lr = learning_rate(cfg)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=self.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=self.base_lr, weight_decay=cfg.weight_decay)
        self.iteration = 0
        self._elapsed_before = 0.0
        # the clock of time limits, it/s and ETA; a benchmark on a shared machine may swap in a
        # CPU-time clock (e.g. ``lambda: time.process_time() / n_threads``)
        self.clock: Callable[[], float] = time.perf_counter
        self.best_val_loss: float | None = None
        self.best_val_iou: float | None = None
        self.best_iteration: int | None = None
        self._best_state: dict | None = None
        self._last_val: tuple[int, float, float] | None = None  # (iteration, loss, IoU) of the latest validation
        self.kept: str | None = None  # "best" or "last": the weights the finished model holds
        self.kept_iteration: int | None = None
        self.average = WeightAverage(cfg.ema_decay)
        self.stopped = False
        self._finished = False
        self._amp_dtype = None
        self._scaler = None
        if self.device.type == "cuda" and cfg.mixed_precision:
            self._amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self._amp_dtype == torch.float16:
                self._scaler = torch.amp.GradScaler("cuda")

    # ------------------------------------------------------------------ inputs

    def _check_memory(self) -> None:
        """Refuse a tile and batch whose training step cannot fit in memory (before any work)."""
        import torch

        from .checks import available_memory
        from .tiling import bytes_per_pixel

        # the forward activations, kept for the backward pass, and their gradients
        need = 2 * self.input_shape[0] * self.input_shape[1] * bytes_per_pixel(self.model, None) * self.batch_size
        room = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else available_memory()
        if room is not None and need > room:
            raise MemoryError(f"training tiles of {self.input_shape[0]} x {self.input_shape[1]} pixels in batches of "
                              f"{self.batch_size} need about {need / 2**30:.1f} GiB but {room / 2**30:.1f} GiB are free "
                              f"on {self.device}; lower batch_size or tile_shape")

    def targets_for(self, ann):
        """Training targets (:class:`napari_unet.data.Targets`) of one 2D annotation plane, as this
        trainer makes them (gaps, ring, borders and loss weights of its config and model)."""
        return self.data.targets_for(ann, n_classes=self.n_classes, borders=self.borders)

    @property
    def sampler(self):
        """The tile sampler of the training pixels."""
        return self.data.sampler

    @property
    def val_sampler(self):
        """The tile sampler of the held-out validation pixels (None when nothing is held out)."""
        return self.data.val_sampler

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
        self.best_val_loss = self.best_val_iou = self.best_iteration = None
        self._best_state = None
        logger.info("annotations updated at iteration %d", self.iteration)

    def set_preview(self, image_region, normalize=True) -> None:
        """Predict this raw 2D region ``(Y, X)`` / ``(C, Y, X)`` every ``config.preview_every`` iterations.

        ``normalize`` as in :func:`napari_unet.predict_tiled`: True normalizes the region with its
        own percentiles; ``(lows, highs)`` with given ones, e.g. those of the whole stack the
        region is a plane of (:meth:`intensity_range`), as training normalizes it.
        """
        with self._lock:
            self._preview = None if image_region is None else np.asarray(image_region)
            self._preview_normalize = normalize

    def intensity_range(self, index: int):
        """``(lows, highs)`` that training maps to 0 and 1 in image ``index`` (None: no normalization)."""
        return self.data.intensity_range(index)

    def stop(self) -> None:
        """Ask :meth:`run` to end (thread-safe); it ends within about a second keeping the best model."""
        self._stop_event.set()

    @property
    def total_iterations(self) -> int | None:
        return None if self.config.iterations is None else int(self.config.iterations)

    # ------------------------------------------------------------------ the loop

    def _progress(self, elapsed: float) -> float:
        return budget_progress(self.config, self.iteration, elapsed)

    def _budget_left(self, elapsed: float) -> bool:
        return budget_left(self.config, self.iteration, elapsed)

    def _eta(self, elapsed: float, it_per_s: float | None) -> float | None:
        return budget_eta(self.config, self.iteration, elapsed, it_per_s)

    def _step(self, batch) -> float:
        import torch

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self._amp_dtype is not None:
            with torch.autocast(device_type="cuda", dtype=self._amp_dtype):
                logits = self.model(batch.image)
        else:
            logits = self.model(batch.image)
        loss = weighted_cross_entropy(logits, batch.target, batch.weights)
        if self._scaler is not None:
            self._scaler.scale(loss).backward()
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.average.update(self.model, self.iteration)
        return float(loss.detach())

    def run(self) -> Iterator[TrainEvent]:
        """Train, yielding a :class:`TrainEvent` every ``config.log_every`` iterations and at
        validations, previews and checkpoints; the last event has ``kind == "done"``.

        Closing the generator early (or :meth:`stop`) also ends training and restores the best
        model.
        """
        cfg = self.config
        if self._finished:
            raise RuntimeError("this Trainer has finished; make a new one (pass model=trainer.model to train on)")
        t0 = self.clock()
        last_checkpoint = t0
        rate_t, rate_it = t0, self.iteration
        it_per_s = None
        loss = None
        reason = "finished"
        budget_used = False  # a run stopped or closed early keeps its best weights
        recent: list[float] = []
        try:
            while True:
                elapsed = self._elapsed_before + self.clock() - t0
                if self._stop_event.is_set():
                    reason = "stopped"
                    break
                if not self._budget_left(elapsed):
                    reason = "time limit reached" if (cfg.time_limit_s is not None and elapsed >= cfg.time_limit_s) else "finished"
                    budget_used = True
                    break
                self._apply_pending()
                factor = schedule_factor(cfg.lr_schedule, self._progress(elapsed))
                lr = self.base_lr * factor
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = self.sampler.sample(self.batch_size, device=self.device)
                loss = self._step(batch)
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss became {loss} at iteration {self.iteration + 1}; lower the learning rate"
                    )
                self.iteration += 1
                recent.append(loss)
                now = self.clock()
                elapsed = self._elapsed_before + now - t0
                if now - rate_t >= 1.0 or it_per_s is None:
                    it_per_s = (self.iteration - rate_it) / max(now - rate_t, 1e-9)
                    rate_t, rate_it = now, self.iteration
                record = {"iteration": self.iteration, "loss": loss, "learning_rate": lr, "elapsed_s": elapsed}
                self.history.append(record)
                event = dict(iteration=self.iteration, total_iterations=self.total_iterations, loss=loss,
                             it_per_s=it_per_s, eta_s=self._eta(elapsed, it_per_s), elapsed_s=elapsed,
                             learning_rate=lr, best_val_loss=self.best_val_loss)
                if self.iteration % max(1, cfg.log_every) == 0:
                    yield TrainEvent("step", **event)
                last = not self._budget_left(elapsed)
                if self.data.val_batches and (self.iteration % max(1, cfg.validate_every) == 0 or last):
                    result = self._validate()
                    if result is None:  # stopped during validation
                        continue
                    val_loss, val_iou = result
                    record.update(val_loss=val_loss, val_iou=val_iou)
                    event.update(best_val_loss=self.best_val_loss)
                    yield TrainEvent("validation", val_loss=val_loss, val_iou=val_iou, **event)
                if cfg.preview_every and self._preview is not None and (self.iteration % cfg.preview_every == 0 or last):
                    probabilities = self._predict_preview()
                    if probabilities is not None:
                        yield TrainEvent("preview", preview=probabilities, **event)
                if cfg.checkpoint_dir and self.clock() - last_checkpoint >= cfg.checkpoint_every_s:
                    path = self.save_checkpoint(elapsed=elapsed)
                    last_checkpoint = self.clock()
                    yield TrainEvent("checkpoint", message=str(path), **event)
        except (GeneratorExit, KeyboardInterrupt):
            reason = "stopped"  # closed early or Ctrl-C: the same end as stop()
            raise
        finally:
            # also runs when the consumer closes the generator early
            elapsed = self._elapsed_before + self.clock() - t0
            if not self._finished:
                self.stopped = reason == "stopped"
                self._finish(elapsed, budget_used=budget_used)
        message = reason
        kept_loss, kept_iou = self._kept_validation()
        if kept_loss is not None and self.kept == "best":
            message += f"; kept the model of iteration {self.best_iteration} (validation loss {kept_loss:.4f})"
        elif kept_loss is not None:
            message += (f"; kept the final model (validation loss {kept_loss:.4f}; lowest "
                        f"{self.best_val_loss:.4f} at iteration {self.best_iteration})")
        if cfg.checkpoint_dir:
            self.save_checkpoint(elapsed=elapsed)
        yield TrainEvent("done", iteration=self.iteration, total_iterations=self.total_iterations, loss=loss,
                         val_loss=kept_loss, val_iou=kept_iou, it_per_s=it_per_s, eta_s=0.0,
                         elapsed_s=elapsed, message=message, best_val_loss=self.best_val_loss)

    def _finish(self, elapsed: float, *, budget_used: bool = False):
        self._finished = True
        self._elapsed_before = elapsed
        keep_last = budget_used and self.config.keep_model == "last"  # stopped early: the best
        if self._best_state is not None and not keep_last:
            self.model.load_state_dict(self._best_state)
            self.kept, self.kept_iteration = "best", self.best_iteration
        else:
            if self.average.state is not None:
                self.model.load_state_dict(self.average.state)
            self.kept, self.kept_iteration = "last", self.iteration
        self.model.eval()
        self._set_metadata(iterations=self.iteration, elapsed=elapsed)

    # ------------------------------------------------------------------ validation / preview

    def _validate(self):
        """Loss and foreground IoU on the held-out pixels; keeps the best weights. None when stopped."""
        with self.average.applied(self.model):
            scores = validation_scores(self.model, self.data.val_batches, self.n_classes,
                                       amp_dtype=self._amp_dtype, stop=self._stop_event.is_set)
        if scores is None:
            return None
        val_loss, val_iou = scores
        self._last_val = (self.iteration, val_loss, val_iou)
        if self.best_val_loss is None or val_loss < self.best_val_loss:
            self.best_val_loss = val_loss
            self.best_val_iou = val_iou
            self.best_iteration = self.iteration
            source = self.average.state if self.average.state is not None else self.model.state_dict()
            self._best_state = {k: v.detach().clone() for k, v in source.items()}
        return val_loss, val_iou

    def _predict_tile(self):
        # a prediction tile a few times the training tile: fast and within memory on a CPU
        return tuple(int(s) for s in self.model.valid_input_shape(tuple(max(256, 2 * s) for s in self.input_shape)))

    def _predict_preview(self):
        import torch

        from .tiling import iter_predict_tiled

        with self._lock:
            region = self._preview
            normalize = getattr(self, "_preview_normalize", True)
        if region is None:
            return None
        self.model.eval()
        self._set_metadata(iterations=self.iteration, elapsed=None)
        with torch.no_grad(), self.average.applied(self.model):
            gen = iter_predict_tiled(self.model, region, device=self.device, tile_shape=self._predict_tile(),
                                     normalize=normalize)
            try:
                while True:
                    next(gen)
                    if self._stop_event.is_set():
                        gen.close()
                        return None
            except StopIteration as stop:
                return stop.value

    # ------------------------------------------------------------------ metadata / checkpoints

    def _set_metadata(self, *, iterations: int, elapsed: float | None):
        cfg = self.config
        meta = self.model.metadata
        meta["mode"] = cfg.mode
        if cfg.class_names is not None:
            names = list(cfg.class_names)
        elif meta.get("class_names") and len(meta["class_names"]) == self.n_classes:
            names = list(meta["class_names"])
        elif cfg.mode == "instances":
            names = ["background", "cell", "cell border"] if self.borders else ["background", "cell"]
        else:
            names = ["background"] + [f"class {k}" for k in range(2, self.n_classes + 1)]
        if len(names) != self.n_classes:
            raise ValueError(f"config.class_names has {len(names)} names for {self.n_classes} classes")
        meta["class_names"] = names
        if self.borders:
            meta["border_class"] = 2
        else:
            meta.pop("border_class", None)
        meta["normalization"] = dict(self.normalization)
        meta["axes"] = "YX" if self.model.config.in_channels == 1 else "CYX"
        meta["tile"] = {
            "train_input_shape": list(self.input_shape),
            "train_output_shape": list(self.output_shape),
            "padding": self.model.config.padding,
        }
        if elapsed is None:
            return
        previous = self._previous_training or {}
        kept_loss, kept_iou = self._kept_validation()
        meta["training"] = {
            "iterations": int(iterations),
            "total_iterations": int(previous.get("total_iterations", 0)) + int(iterations),
            "elapsed_s": round(float(elapsed), 3),
            "best_iteration": getattr(self, "best_iteration", None),
            "best_val_loss": getattr(self, "best_val_loss", None),
            "best_val_iou": getattr(self, "best_val_iou", None),
            "kept": getattr(self, "kept", None),
            "kept_iteration": getattr(self, "kept_iteration", None),
            "kept_val_loss": kept_loss,
            "kept_val_iou": kept_iou,
            "final_loss": self.history[-1]["loss"] if getattr(self, "history", None) else None,
            "stopped": bool(getattr(self, "stopped", False)),
            "n_images": len(self.data.images),
            "n_annotated_pixels": int(self.data.n_annotated),
            "device": str(self.device),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "package_version": __version__,
            "continued_from": previous or None,
            "config": cfg.to_dict(),
        }

    def _kept_validation(self) -> tuple[float | None, float | None]:
        """Validation loss and IoU of the weights the finished model holds (None where unknown)."""
        kept = getattr(self, "kept", None)
        if kept == "best":
            return self.best_val_loss, self.best_val_iou
        last = getattr(self, "_last_val", None)
        if kept == "last" and last is not None and last[0] == self.iteration:
            return last[1], last[2]
        return None, None

    def save_checkpoint(self, path=None, *, elapsed: float | None = None) -> Path:
        """Write model + optimizer + progress to ``path`` (default ``checkpoint_dir/checkpoint.unet``),
        atomically. The file is also a model file that :func:`napari_unet.load_model` reads."""
        from .checkpoints import checkpoint_bytes
        from .outputs import atomic_write_bytes

        if path is None:
            if not self.config.checkpoint_dir:
                raise ValueError("no path given and config.checkpoint_dir is not set")
            path = Path(self.config.checkpoint_dir) / CHECKPOINT_NAME
        elapsed = self._elapsed_before if elapsed is None else elapsed
        self._set_metadata(iterations=self.iteration, elapsed=elapsed)
        state = {
            "iteration": self.iteration,
            "elapsed_s": elapsed,
            "config": self.config.to_dict(),
            "best_val_loss": self.best_val_loss,
            "best_val_iou": self.best_val_iou,
            "best_iteration": self.best_iteration,
            "history": self.history,
            "previous_training": self._previous_training,
        }
        tensors = {"best": self._best_state, "ema": self.average.state}
        data = checkpoint_bytes(self.model, state, self.optimizer.state_dict(),
                                {k: v for k, v in tensors.items() if v is not None})
        return atomic_write_bytes(path, data)

    @classmethod
    def resume(cls, path, images, annotations, *, config: TrainConfig | None = None, axes=None, preview=None) -> "Trainer":
        """A Trainer that continues a checkpoint written by :meth:`save_checkpoint`.

        ``config`` replaces the stored one (e.g. to raise ``iterations``); the iteration count,
        optimizer state, best model and history continue. The tile sampler restarts from a
        seed derived from the iteration, so a resumed run is reproducible but not bit-identical
        to an uninterrupted one.
        """
        from .checkpoints import optimizer_state, read_checkpoint
        from .model_files import ModelFileError

        model, state, extra_tensors, what = read_checkpoint(path)
        if config is None:
            config = TrainConfig.from_dict(state["config"])
        config = dataclasses.replace(config, seed=int(config.seed) + int(state["iteration"]))
        trainer = cls(images, annotations, config=config, model=model, axes=axes, preview=preview)
        trainer._previous_training = state.get("previous_training")
        trainer.iteration = int(state["iteration"])
        trainer._elapsed_before = float(state["elapsed_s"])
        trainer.history = list(state.get("history") or [])
        trainer.best_val_loss = state.get("best_val_loss")
        trainer.best_val_iou = state.get("best_val_iou")
        trainer.best_iteration = state.get("best_iteration")
        if "best" in extra_tensors:
            trainer._best_state = {k: v.to(trainer.device) for k, v in extra_tensors["best"].items()}
        if "ema" in extra_tensors:
            trainer.average.state = {k: v.to(trainer.device) for k, v in extra_tensors["ema"].items()}
        opt_state = optimizer_state(state["optimizer"], extra_tensors.get("optimizer", {}))
        try:
            trainer.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as exc:
            raise ModelFileError(f"{what}: the optimizer state does not fit ({exc}); was config.optimizer changed?") from None
        # restore the original seed in the stored config
        trainer.config = dataclasses.replace(config, seed=int(config.seed) - int(state["iteration"]))
        return trainer
