"""What training reports: :class:`TrainEvent` (one progress report of ``Trainer.run``) and
:class:`TrainResult` (what :func:`napari_unet.train` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["TrainEvent", "TrainResult", "EventKind"]

EventKind = Literal["step", "validation", "checkpoint", "preview", "done"]


@dataclass
class TrainEvent:
    """One progress report from :meth:`Trainer.run`.

    ``kind`` says what happened: ``"step"`` (an iteration finished), ``"validation"``
    (``val_loss``/``val_iou`` fresh), ``"checkpoint"`` (``message`` holds the path),
    ``"preview"`` (``preview`` holds ``(n_classes, Y, X)`` probabilities of the preview region)
    or ``"done"`` (the last event; ``message`` says why training ended).
    """

    kind: EventKind
    iteration: int
    total_iterations: int | None
    loss: float | None = None
    val_loss: float | None = None
    val_iou: float | None = None
    it_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    preview: np.ndarray | None = None
    message: str = ""
    learning_rate: float | None = None
    best_val_loss: float | None = None


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained ``model`` (see ``TrainConfig.keep_model``) and its history."""

    model: Any
    history: list[dict] = field(default_factory=list)
    stopped: bool = False
