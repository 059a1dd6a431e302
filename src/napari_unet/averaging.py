"""Polyak averaging of the weights during training (``TrainConfig.ema_decay``)."""

from __future__ import annotations

import contextlib

__all__ = ["WeightAverage"]


class WeightAverage:
    """An exponential moving average of a model's weights, with a warm-up: early on the average
    follows the weights closely (1/11, 2/12, ... -> ``decay``). ``decay`` None or 0: off."""

    def __init__(self, decay: float | None):
        self.decay = float(decay or 0.0)
        self.state: dict | None = None  # the averaged weights, made at the first update

    def update(self, model, iteration: int) -> None:
        import torch

        if self.decay <= 0:
            return
        state = model.state_dict()
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in state.items()}
            return
        d = min(self.decay, (1.0 + iteration) / (10.0 + iteration))
        with torch.no_grad():
            for key, value in state.items():
                avg = self.state[key]
                if avg.is_floating_point():
                    avg.mul_(d).add_(value.detach().to(avg.dtype), alpha=1.0 - d)
                else:  # e.g. batch norm's num_batches_tracked
                    avg.copy_(value)

    @contextlib.contextmanager
    def applied(self, model):
        """Within the block ``model`` holds the averaged weights (if any), then its own again."""
        if self.state is None:
            yield
            return
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(live)
