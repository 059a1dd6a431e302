"""The live loss / validation plot of the Train widget (QPainter, no plotting library)."""

from __future__ import annotations

import logging
import math
from typing import Sequence

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

logger = logging.getLogger(__name__)


class LossPlot(QWidget):
    """A small live plot of the training and validation loss (QPainter, no matplotlib)."""

    TRAIN_COLOR = QColor(90, 170, 255)
    VAL_COLOR = QColor(255, 150, 60)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.train: list[tuple[float, float]] = []
        self.validation: list[tuple[float, float]] = []
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Training loss (blue, smoothed) and validation loss (orange) per iteration")

    def clear(self) -> None:
        self.train.clear()
        self.validation.clear()
        self.update()

    def add(self, iteration: float, loss: float | None = None, val_loss: float | None = None) -> None:
        """Add a point. The plot is not redrawn: the caller calls ``update()`` when it redraws the
        rest (each redraw recomposes the napari window, software OpenGL on many machines)."""
        if loss is not None and math.isfinite(loss):
            self.train.append((float(iteration), float(loss)))
        if val_loss is not None and math.isfinite(val_loss):
            if not self.validation or self.validation[-1][0] != iteration:
                self.validation.append((float(iteration), float(val_loss)))

    @staticmethod
    def _smooth(points: Sequence[tuple[float, float]], alpha: float = 0.9):
        out, value = [], None
        for x, y in points:
            value = y if value is None else alpha * value + (1 - alpha) * y
            out.append((x, value))
        return out

    def paintEvent(self, event):  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        fg = palette.color(palette.ColorRole.WindowText)
        painter.fillRect(self.rect(), palette.color(palette.ColorRole.Base))
        font = QFont(painter.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        left, right, top, bottom = metrics.horizontalAdvance("0.000") + 8, 8, 8, metrics.height() + 6
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        painter.setPen(QPen(fg, 1))
        painter.drawRect(plot)
        train = self._smooth(self.train) if len(self.train) > 1 else list(self.train)
        series = [(train, self.TRAIN_COLOR), (self.validation, self.VAL_COLOR)]
        points = [p for s, _ in series for p in s]
        if not points:
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "loss: start training")
            painter.end()
            return
        xs = [p[0] for p in points]
        ys = [p[1] for p in points] + [p[1] for p in self.train[-200:]]
        x0, x1 = min(xs), max(xs)
        y0, y1 = 0.0, max(ys)
        if x1 <= x0:
            x1 = x0 + 1
        if y1 <= y0:
            y1 = y0 + 1
        y1 *= 1.05

        def to_screen(x, y):
            return QPointF(
                plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                plot.bottom() - (y - y0) / (y1 - y0) * plot.height(),
            )

        # raw training loss, faint
        if len(self.train) > 1:
            faint = QColor(self.TRAIN_COLOR)
            faint.setAlpha(70)
            self._draw_series(painter, self.train, faint, to_screen, 1)
        for data, color in series:
            self._draw_series(painter, data, color, to_screen, 2)
        painter.setPen(QPen(fg, 1))
        painter.drawText(QRectF(0, plot.top() - 4, left - 4, metrics.height()), Qt.AlignmentFlag.AlignRight, f"{y1:.3g}")
        painter.drawText(QRectF(0, plot.bottom() - metrics.height() + 4, left - 4, metrics.height()),
                         Qt.AlignmentFlag.AlignRight, "0")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), metrics.height()),
                         Qt.AlignmentFlag.AlignLeft, f"{x0:.0f}")
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), metrics.height()),
                         Qt.AlignmentFlag.AlignRight, f"{x1:.0f} it.")
        # legend
        lx, ly = plot.right() - 8, plot.top() + 4
        for label, color, data in (("train", self.TRAIN_COLOR, self.train), ("validation", self.VAL_COLOR, self.validation)):
            if not data:
                continue
            text = f"{label} {data[-1][1]:.3f}"
            width = metrics.horizontalAdvance(text)
            painter.setPen(QPen(color, 2))
            painter.drawText(QRectF(lx - width, ly, width, metrics.height()), Qt.AlignmentFlag.AlignRight, text)
            ly += metrics.height()
        painter.end()

    @staticmethod
    def _draw_series(painter, data, color, to_screen, width):
        if not data:
            return
        painter.setPen(QPen(color, width))
        if len(data) == 1:
            painter.drawEllipse(to_screen(*data[0]), 2, 2)
            return
        path = QPainterPath(to_screen(*data[0]))
        for x, y in data[1:]:
            path.lineTo(to_screen(x, y))
        painter.drawPath(path)
