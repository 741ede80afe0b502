"""The package's one message channel: ``logging`` under the ``h2aseg`` logger, set up once by the CLI.

Library modules write ``logger = logging.getLogger(__name__)`` and call ``logger.info(...)`` /
``logger.warning(...)``; they never print. :func:`configure_logging` (called by ``h2aseg.cli.main``) sends
the ``h2aseg`` messages to standard error in one plain format::

    INFO              the message as it is
    WARNING / ERROR   "warning: ..." / "error: ..."
    DEBUG             "debug: <module>: ..."

at level INFO, DEBUG with ``h2aseg -v <verb>``, WARNING with ``h2aseg -q <verb>``. Results a verb is
asked for (tables, paths written, JSON) still go to standard output; progress bars stay tqdm.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "PlainFormatter"]

PACKAGE_LOGGER = "h2aseg"


class PlainFormatter(logging.Formatter):
    """INFO as the bare message; other levels prefixed with their lower-case name (DEBUG also the logger)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno == logging.INFO:
            return message
        if record.levelno == logging.DEBUG:
            return f"debug: {record.name}: {message}"
        return f"{record.levelname.lower()}: {message}"


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a message is emitted (a redirect or a test
    capture set up after :func:`configure_logging` still sees the messages)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> logging.Logger:
    """Send ``h2aseg`` messages at ``level`` and above to standard error (a second call changes the level).

    Returns:
        The package logger.
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.setLevel(level)
    if not any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(PlainFormatter())
        logger.addHandler(handler)
    return logger
