"""What the ``napari-unet`` commands share: the user-error type, argument parsers and the text
progress of a training run (used by :mod:`napari_unet.cli.main`, :mod:`napari_unet.cli.demo`,
:mod:`napari_unet.cli.cluster`)."""

from __future__ import annotations

import argparse
import logging
import math
import re

from ..common.progress import ProgressBar, format_seconds

__all__ = ["CliError", "parse_duration", "parse_tile", "parse_pixel_size", "positive_int", "non_negative_int",
           "positive_float", "training_loop"]

logger = logging.getLogger("napari_unet.cli.main")


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"5m"``, ``"1.5h"`` -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?|min)\s*", str(text).lower())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}; use seconds or e.g. 90s, 5m, 1.5h")
    value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be > 0, got {text!r}")
    return value


def parse_tta(text: str) -> int | str:
    """``--tta``: 1, 2, 4 or auto (:func:`napari_unet.predict.views.check_tta`)."""
    from ..predict.views import check_tta

    try:
        return check_tta(int(text) if text.strip().isdigit() else text)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_tile(text: str) -> tuple[int, int]:
    parts = re.split(r"[x,]", text.lower())
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid tile {text!r}; use e.g. 188 or 188x188") from None
    if len(values) == 1:
        values = values * 2
    if len(values) not in (2, 3) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid tile {text!r}; use e.g. 188, 188x188 or 16x80x80 (3D)")
    return tuple(values)  # type: ignore[return-value]


def int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


non_negative_int = int_at_least(0)
positive_int = int_at_least(1)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def parse_pixel_size(text: str) -> tuple[float, ...]:
    """``"0.325"`` or ``"0.3x0.25"`` (y x) -> micrometres per pixel (y, x); ``"2x0.3x0.3"`` (z y x)
    -> per voxel (z, y, x)."""
    parts = [p for p in re.split(r"[x,]", text.lower()) if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid pixel size {text!r}; use micrometres, e.g. 0.325 or 0.3x0.25") from None
    if len(values) == 1:
        values = values * 2
    if len(values) not in (2, 3) or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"invalid pixel size {text!r}; use micrometres > 0, e.g. 0.325, 0.3x0.25 "
                                         "or 2x0.3x0.3 (z y x)")
    return tuple(values)


def training_loop(trainer, *, quiet: bool, label: str = "train") -> bool:
    """Drive the training with a progress bar; False when Ctrl-C stopped it (best weights kept)."""
    bar = ProgressBar(label, enabled=not quiet)
    cfg = trainer.config
    last_val = ""
    events = trainer.run()
    try:
        for event in events:
            if event.kind == "validation" and event.val_loss is not None:
                last_val = f" val {event.val_loss:.3f} IoU {event.val_iou:.2f}"
            if event.kind == "checkpoint":
                logger.info("checkpoint written to %s", event.message)
            if event.kind not in ("step", "validation", "done"):
                continue
            if cfg.iterations is not None:
                done, total = event.iteration, cfg.iterations
                if cfg.time_limit_s is not None:
                    done, total = max(event.iteration / cfg.iterations, event.elapsed_s / cfg.time_limit_s), 1.0
            else:
                done, total = event.elapsed_s, cfg.time_limit_s
            info = (f"it {event.iteration} loss {event.loss if event.loss is not None else float('nan'):.3f}{last_val} "
                    f"{event.it_per_s or 0:.2f} it/s {format_seconds(event.elapsed_s)} ETA {format_seconds(event.eta_s)}")
            bar.update(done, total, info, force=event.kind == "done")
            if event.kind == "done":
                bar.close(f"{label}: {event.message} after {event.iteration} iterations, {format_seconds(event.elapsed_s)}")
    except KeyboardInterrupt:
        # Ctrl-C: end like stop(): the generator's cleanup keeps the best model, stopped: true
        trainer.stop()
        events.close()  # ends like the Stop button: best weights kept, stopped: true
        bar.close(f"{label}: interrupted; keeping the best model so far")
        return False
    return True
