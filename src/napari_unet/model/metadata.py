"""What a trained model carries in ``model.metadata``: what prediction needs (mode, class names,
border class, normalization, axes, the training tile) and the summary of its training."""

from __future__ import annotations

import time

from .._version import __version__
from ..config import TrainConfig

__all__ = ["class_names", "set_prediction_metadata", "training_summary", "trained_iterations", "undertrained_warning",
           "MIN_TRAINED_ITERATIONS"]


def class_names(config: TrainConfig, metadata: dict, n_classes: int, borders: bool) -> list[str]:
    """The names of the ``n_classes`` classes: the config's, else the model's own (when they
    count right), else the default names of the mode."""
    if config.class_names is not None:
        names = list(config.class_names)
    elif metadata.get("class_names") and len(metadata["class_names"]) == n_classes:
        names = list(metadata["class_names"])
    elif config.mode == "instances":
        names = ["background", "cell", "cell border"] if borders else ["background", "cell"]
    else:
        names = ["background"] + [f"class {k}" for k in range(2, n_classes + 1)]
    if len(names) != n_classes:
        raise ValueError(f"config.class_names has {len(names)} names for {n_classes} classes")
    return names


def set_prediction_metadata(model, config: TrainConfig, *, n_classes: int, borders: bool, normalization: dict,
                            input_shape, output_shape) -> None:
    """Write into ``model.metadata`` what prediction needs to use the model as it was trained."""
    meta = model.metadata
    meta["mode"] = config.mode
    meta["class_names"] = class_names(config, meta, n_classes, borders)
    if borders:
        meta["border_class"] = 2
    else:
        meta.pop("border_class", None)
    meta["normalization"] = dict(normalization)
    spatial = "ZYX" if model.config.spatial_dims == 3 else "YX"
    meta["axes"] = spatial if model.config.in_channels == 1 else "C" + spatial
    if config.pixel_size is not None:  # else a continued model keeps the pixel size it had
        meta["pixel_size"] = [float(v) for v in config.pixel_size[-2:]]
        if len(config.pixel_size) == 3:
            meta["voxel_size"] = [float(v) for v in config.pixel_size]
    meta["tile"] = {
        "train_input_shape": list(input_shape),
        "train_output_shape": list(output_shape),
        "padding": model.config.padding,
    }


def training_summary(trainer, *, iterations: int, elapsed: float) -> dict:
    """``model.metadata["training"]`` of a :class:`napari_unet.Trainer` (read from its public
    attributes) after ``iterations`` in ``elapsed`` seconds."""
    previous = trainer.previous_training or {}
    best = trainer.best
    kept_loss, kept_iou = best.kept_scores(trainer.iteration)
    return {
        "iterations": int(iterations),
        "total_iterations": int(previous.get("total_iterations", 0)) + int(iterations),
        "elapsed_s": round(float(elapsed), 3),
        "best_iteration": best.iteration,
        "best_val_loss": best.loss,
        "best_val_iou": best.iou,
        "kept": best.kept,
        "kept_iteration": best.kept_iteration,
        "kept_val_loss": kept_loss,
        "kept_val_iou": kept_iou,
        "final_loss": trainer.history[-1]["loss"] if trainer.history else None,
        "stopped": bool(trainer.stopped),
        "n_images": len(trainer.data.images),
        "n_annotated_pixels": int(trainer.data.n_annotated),
        "device": str(trainer.device),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "package_version": __version__,
        "continued_from": previous or None,
        "config": trainer.config.to_dict(),
    }


#: a model whose kept weights have seen fewer training iterations than this is likely under-trained
MIN_TRAINED_ITERATIONS = 100


def trained_iterations(model) -> int | None:
    """Iterations of training behind ``model``'s weights: those of earlier runs (Continue) plus
    the iteration its last run kept; None when the metadata does not say."""
    training = (getattr(model, "metadata", None) or {}).get("training")
    if not isinstance(training, dict) or training.get("iterations") is None:
        return None
    try:
        iterations = int(training["iterations"])
        earlier = int(training.get("total_iterations", iterations)) - iterations
        kept = training.get("kept_iteration")
        return earlier + (int(kept) if kept is not None else iterations)
    except (TypeError, ValueError):
        return None


def undertrained_warning(model) -> str | None:
    """A plain-words warning when ``model`` has trained too little to be trusted, else None."""
    trained = trained_iterations(model)
    if trained is None or trained >= MIN_TRAINED_ITERATIONS:
        return None
    training = model.metadata["training"]
    ran, kept = int(training["iterations"]), training.get("kept_iteration")
    if kept is not None and int(kept) < ran:  # the run went on, but its validation kept early weights
        return (f"The kept model is that of iteration {int(kept)} of the {ran} this run trained (the best on the "
                f"painted validation cells), {trained} iteration(s) in all: a useful one needs "
                f"{MIN_TRAINED_ITERATIONS} or more, so its predictions may miss cells. Press Continue to train "
                "on, or paint a few more cells.")
    return (f"The model has trained only {trained} iteration(s) (a useful one needs {MIN_TRAINED_ITERATIONS} or "
            f"more): its predictions may miss cells. Press Continue to train on, or raise the time limit.")
