"""The training budget and the learning-rate schedule over it."""

from __future__ import annotations

import math

from ..config import TrainConfig

__all__ = ["learning_rate", "schedule_factor", "budget_progress", "budget_left", "budget_eta", "budget_end", "IterationRate",
           "PreviewClock"]


def learning_rate(config: TrainConfig) -> float:
    if config.learning_rate is not None:
        return float(config.learning_rate)
    return 0.01 if config.optimizer == "sgd" else 1e-3


def schedule_factor(kind: str, progress: float) -> float:
    """Learning-rate factor at ``progress`` in [0, 1] of the budget."""
    progress = min(max(progress, 0.0), 1.0)
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        # short linear warm-up, then cosine to 5 % of the base rate
        warm = 0.02
        if progress < warm:
            return 0.1 + 0.9 * progress / warm
        p = (progress - warm) / (1 - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))
    if kind == "step":
        # divide by 10 at half and at three quarters of the budget
        return 1.0 if progress < 0.5 else (0.1 if progress < 0.75 else 0.01)
    raise ValueError(f'lr_schedule must be "constant", "cosine" or "step", got {kind!r}')


def budget_progress(config: TrainConfig, iteration: int, elapsed: float) -> float:
    """Fraction of the budget (iterations and / or time limit, whichever is further) spent."""
    p = 0.0
    if config.iterations is not None:
        p = max(p, iteration / config.iterations)
    if config.time_limit_s is not None:
        p = max(p, elapsed / config.time_limit_s)
    return p


def budget_left(config: TrainConfig, iteration: int, elapsed: float) -> bool:
    """True while neither the iteration budget nor the time limit is spent."""
    if config.iterations is not None and iteration >= config.iterations:
        return False
    if config.time_limit_s is not None and elapsed >= config.time_limit_s:
        return False
    return True


def budget_eta(config: TrainConfig, iteration: int, elapsed: float, it_per_s: float | None) -> float | None:
    """Seconds left until the budget is spent (None when unknown)."""
    etas = []
    if config.iterations is not None and it_per_s:
        etas.append(max(0.0, (config.iterations - iteration) / it_per_s))
    if config.time_limit_s is not None:
        etas.append(max(0.0, config.time_limit_s - elapsed))
    return min(etas) if etas else None


def budget_end(config: TrainConfig, iteration: int, elapsed: float) -> str | None:
    """Why a run ends now: "time limit reached" or "finished" (its budget spent); None while
    budget is left."""
    if budget_left(config, iteration, elapsed):
        return None
    limit = config.time_limit_s
    return "time limit reached" if (limit is not None and elapsed >= limit) else "finished"


class IterationRate:
    """Iterations per second of a run, measured anew about every second (``value``, None before
    the first :meth:`update`)."""

    def __init__(self, now: float, iteration: int):
        self.since, self.since_iteration = now, iteration
        self.value: float | None = None

    def update(self, now: float, iteration: int) -> float:
        if now - self.since >= 1.0 or self.value is None:
            self.value = (iteration - self.since_iteration) / max(now - self.since, 1e-9)
            self.since, self.since_iteration = now, iteration
        return self.value


class PreviewClock:
    """When a run that previews by time (``TrainConfig.preview_every_s``) predicts its preview.

    The first preview comes ``FIRST_S`` seconds into training (sooner if ``every_s`` is shorter),
    then one every ``every_s`` seconds; a preview that costs more than ``SHARE`` of the time
    between two spaces them out (at most ``LONGEST_S`` apart), so that previews take at most
    about that share of the training time on any machine and any image size.
    """

    FIRST_S = 2.0
    SHARE = 0.05
    LONGEST_S = 30.0

    def __init__(self, every_s: float, start: float):
        self.every_s = float(every_s)
        self.next_at = start + min(self.FIRST_S, self.every_s)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def done(self, started: float, ended: float) -> None:
        """Note a preview that ran from ``started`` to ``ended``: the next one is due later."""
        cost = max(0.0, ended - started)
        interval = min(max(self.every_s, cost / self.SHARE), max(self.every_s, self.LONGEST_S))
        self.next_at = ended + interval
