"""Checkpoints: a model file that also holds the optimizer and the progress of a training run,
and the folders they are written to.

A checkpoint is a ``.unet`` model file (:func:`napari_unet.load_model` reads it) whose
``model.json`` carries ``extra.checkpoint`` (iteration, elapsed time, config, best validation,
history, the optimizer's JSON part) and whose further members hold tensors: ``optimizer``
(its tensors, named ``<param id>.<key>``), ``best`` (the best weights) and ``ema`` (the averaged
weights).
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
import time
from pathlib import Path

__all__ = ["CHECKPOINT_NAME", "cache_root", "checkpoint_run_dir", "checkpoint_bytes", "read_checkpoint",
           "optimizer_state", "checkpoint_path", "trainer_checkpoint", "restore_trainer"]

CHECKPOINT_NAME = "checkpoint.unet"


def cache_root() -> Path:
    """The per-user cache folder of napari-unet (no platformdirs needed)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "napari-unet" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "napari-unet"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "napari-unet"


def checkpoint_run_dir(root=None, *, keep: int = 5) -> Path:
    """A new, empty folder for the checkpoints of one training run, under ``root``.

    ``root`` defaults to ``$NAPARI_UNET_CHECKPOINT_DIR`` or the user's cache folder
    (``~/.cache/napari-unet/checkpoints`` on Linux). Runs are named by their start time; only the
    ``keep`` newest run folders are kept (older ones are deleted), so checkpoints of large
    networks do not pile up. The napari widget trains with such a folder, so a crash of napari
    costs at most ``TrainConfig.checkpoint_every_s`` of training: the ``checkpoint.unet`` inside is
    a model file (*Load model…*, or ``Trainer.resume``).
    """
    root = Path(root or os.environ.get("NAPARI_UNET_CHECKPOINT_DIR") or cache_root() / "checkpoints")
    root.mkdir(parents=True, exist_ok=True)
    while True:  # names sort by start time (to the microsecond)
        run = root / datetime.datetime.now().strftime("run-%Y%m%d-%H%M%S-%f")
        try:
            run.mkdir()
            break
        except FileExistsError:
            time.sleep(0.001)
    runs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("run-"))
    for old in runs[: max(0, len(runs) - int(keep))]:
        if old != run:
            shutil.rmtree(old, ignore_errors=True)
    return run


def checkpoint_bytes(model, state: dict, optimizer_state_dict: dict, tensors: dict) -> bytes:
    """The bytes of a checkpoint: ``model`` + training ``state`` (JSON-able) + the optimizer's
    state dict + named groups of tensors (e.g. ``{"best": state_dict}``)."""
    from ..model.files import model_to_bytes

    opt_tensors, opt_json = {}, {"param_groups": optimizer_state_dict["param_groups"], "state": {}}
    for pid, entry in optimizer_state_dict["state"].items():
        plain = {}
        for key, value in entry.items():
            if hasattr(value, "detach"):
                opt_tensors[f"{pid}.{key}"] = value
            else:
                plain[key] = value
        opt_json["state"][str(pid)] = plain
    extra_tensors = dict(tensors)
    if opt_tensors:
        extra_tensors["optimizer"] = opt_tensors
    return model_to_bytes(model, extra_json={"checkpoint": {**state, "optimizer": opt_json}}, extra_tensors=extra_tensors)


def read_checkpoint(path):
    """``(model, state, tensors, what)`` of a checkpoint file; ModelFileError for a plain model."""
    from ..model.files import ModelFileError, model_source, read_model_file

    source, what = model_source(path)
    model, header, tensors = read_model_file(source, what, with_extra=True)
    state = (header.get("extra") or {}).get("checkpoint")
    if not state:
        raise ModelFileError(f"{what} is a model file without training state; continue it with "
                             "Trainer(..., model=load_model(path))")
    return model, state, tensors, what


def optimizer_state(opt_json: dict, tensors: dict) -> dict:
    """The optimizer state dict stored by :func:`checkpoint_bytes`, reassembled."""
    out: dict = {"param_groups": opt_json["param_groups"], "state": {}}
    for pid, entry in opt_json["state"].items():
        entry = dict(entry)
        prefix = f"{pid}."
        for name, value in tensors.items():
            if name.startswith(prefix):
                entry[name[len(prefix):]] = value
        out["state"][int(pid)] = entry
    return out


def checkpoint_path(config, path=None) -> Path:
    """``path``, or by default the checkpoint file of the run folder ``config.checkpoint_dir``."""
    if path is not None:
        return path
    if not config.checkpoint_dir:
        raise ValueError("no path given and config.checkpoint_dir is not set")
    return Path(config.checkpoint_dir) / CHECKPOINT_NAME


def trainer_checkpoint(trainer, elapsed: float) -> bytes:
    """The checkpoint of a :class:`napari_unet.Trainer` (read from its public attributes) that
    has trained ``elapsed`` seconds: model, optimizer, progress, best and averaged weights."""
    best = trainer.best
    state = {
        "iteration": trainer.iteration,
        "elapsed_s": elapsed,
        "config": trainer.config.to_dict(),
        "best_val_loss": best.loss,
        "best_val_iou": best.iou,
        "best_iteration": best.iteration,
        "history": trainer.history,
        "previous_training": trainer.previous_training,
    }
    tensors = {"best": best.state, "ema": trainer.average.state}
    return checkpoint_bytes(trainer.model, state, trainer.optimizer.state_dict(),
                            {k: v for k, v in tensors.items() if v is not None})


def restore_trainer(trainer, state: dict, tensors: dict, what: str) -> None:
    """Set a new :class:`napari_unet.Trainer` where the checkpoint (``state`` and ``tensors``
    from :func:`read_checkpoint`) left off: progress, history, best and averaged weights, and the
    optimizer state (ModelFileError when it does not fit the optimizer)."""
    from ..model.files import ModelFileError

    trainer.previous_training = state.get("previous_training")
    trainer.iteration = int(state["iteration"])
    trainer.elapsed_before = float(state["elapsed_s"])
    trainer.history = list(state.get("history") or [])
    best = trainer.best
    best.loss, best.iou, best.iteration = state.get("best_val_loss"), state.get("best_val_iou"), state.get("best_iteration")
    if "best" in tensors:
        best.state = {k: v.to(trainer.device) for k, v in tensors["best"].items()}
    if "ema" in tensors:
        trainer.average.state = {k: v.to(trainer.device) for k, v in tensors["ema"].items()}
    try:
        trainer.optimizer.load_state_dict(optimizer_state(state["optimizer"], tensors.get("optimizer", {})))
    except (ValueError, KeyError) as exc:
        raise ModelFileError(f"{what}: the optimizer state does not fit ({exc}); was config.optimizer changed?") from None
