"""Which weights a training run ends with: the best by validation loss and which weights the
finished model keeps (``TrainConfig.keep_model``), and the Polyak average of the weights along the
way (``TrainConfig.ema_decay``), which validation, previews and the kept model then use."""

from __future__ import annotations

import contextlib

__all__ = ["BestWeights", "WeightAverage"]


class BestWeights:
    """Bookkeeping of the validations of one run.

    ``loss``, ``iou`` and ``iteration`` describe the validation with the lowest loss so far,
    ``state`` holds a copy of those weights; ``last`` is ``(iteration, loss, iou)`` of the
    latest validation. Once the run ends, ``kept`` says which weights the model holds ("best"
    or "last") and ``kept_iteration`` from which iteration.
    """

    def __init__(self):
        self.loss: float | None = None
        self.iou: float | None = None
        self.iteration: int | None = None
        self.state: dict | None = None
        self.last: tuple[int, float, float] | None = None
        self.kept: str | None = None
        self.kept_iteration: int | None = None

    def record(self, iteration: int, loss: float, iou: float, model, average) -> None:
        """Note a validation of ``model`` (or of ``average``'s weights, when it holds any)."""
        self.last = (iteration, loss, iou)
        if self.loss is None or loss < self.loss:
            self.loss, self.iou, self.iteration = loss, iou, iteration
            source = average.state if average.state is not None else model.state_dict()
            self.state = {k: v.detach().clone() for k, v in source.items()}

    def forget(self) -> None:
        """Drop the best weights (the validation pixels changed: earlier losses do not compare)."""
        self.loss = self.iou = self.iteration = None
        self.state = None

    def keep(self, model, average, iteration: int, *, keep_last: bool) -> None:
        """Load the weights the finished ``model`` keeps: the best ones, unless there are none or
        ``keep_last``; then the last ones (averaged, when ``average`` holds any)."""
        if self.state is not None and not keep_last:
            model.load_state_dict(self.state)
            self.kept, self.kept_iteration = "best", self.iteration
        else:
            if average.state is not None:
                model.load_state_dict(average.state)
            self.kept, self.kept_iteration = "last", iteration

    def kept_scores(self, iteration: int) -> tuple[float | None, float | None]:
        """Validation loss and IoU of the kept weights (None where unknown); ``iteration`` is the
        run's last one."""
        if self.kept == "best":
            return self.loss, self.iou
        if self.kept == "last" and self.last is not None and self.last[0] == iteration:
            return self.last[1], self.last[2]
        return None, None


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
