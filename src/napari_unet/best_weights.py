"""The best weights of a training run by validation loss, and which weights the finished model
keeps (``TrainConfig.keep_model``)."""

from __future__ import annotations

__all__ = ["BestWeights"]


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
