"""Messages to the user: napari notifications and plain-word errors."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def notify_error(message: str) -> None:
    """Show ``message`` as a napari error notification (and log it)."""
    from napari.utils.notifications import show_error

    logger.error(message)
    show_error(message)


def notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    logger.warning(message)
    show_warning(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    logger.info(message)
    show_info(message)


class JobError(Exception):
    """Wraps an exception raised inside a worker (see :func:`make_worker`)."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def plain_error(exc: BaseException) -> str:
    """The message of ``exc`` in plain words (no traceback), for a notification."""
    if isinstance(exc, JobError):
        exc = exc.original
    if isinstance(exc, MemoryError):
        return "not enough memory (try a smaller network, batch size or tile)"
    text = str(exc).strip() or type(exc).__name__
    if "out of memory" in text.lower():
        return "the device ran out of memory (try the fast network, a smaller batch size, or the CPU)"
    return text
