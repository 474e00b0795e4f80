"""Console logging of the steward-otp process: the log levels and the handler the CLI installs."""

import logging
import sys
from typing import Final, Literal, TextIO

LogLevel = Literal["error", "warning", "info", "debug"]
"""A console log threshold, from the least to the most talkative (Steward's ``LogLevel``)."""

LOG_LEVELS: Final[tuple[LogLevel, ...]] = ("error", "warning", "info", "debug")
"""Every allowed :data:`LogLevel`, least talkative first."""

STDLIB_LEVELS: Final[dict[LogLevel, int]] = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}
"""The :mod:`logging` level of each :data:`LogLevel`."""

PROJECT_LOGGER: Final = "steward_otp"
"""Name of the logger every steward-otp module logs under (``steward_otp.<module>``)."""


class _ConsoleHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs; its type marks it for replacement."""


def configure_logging(level: LogLevel, timestamps: bool, *, stream: TextIO | None = None) -> None:
    """Send log records to the console (stderr unless *stream* is given).

    Records of steward-otp's own loggers pass from *level* up; records of other libraries
    (nats-py, asyncio, ...) pass only from ``warning`` up (or from *level* when that is
    stricter), so that ``debug`` shows the node's story without a library's internals.
    With *timestamps* each line starts with an ISO 8601 local time.

    Calling it again replaces the previous setup instead of adding a second handler, so a
    changed level takes effect without duplicated lines. Raises :class:`ValueError` for a
    level outside :data:`LOG_LEVELS`.
    """
    if level not in STDLIB_LEVELS:
        allowed = ", ".join(repr(name) for name in LOG_LEVELS)
        raise ValueError(f"log level {level!r} is not one of {allowed}")
    threshold = STDLIB_LEVELS[level]
    handler = _ConsoleHandler(stream if stream is not None else sys.stderr)
    line = "%(levelname)s %(name)s: %(message)s"
    if timestamps:
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d " + line, datefmt="%Y-%m-%dT%H:%M:%S")
        )
    else:
        handler.setFormatter(logging.Formatter(line))

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ConsoleHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(max(threshold, logging.WARNING))
    logging.getLogger(PROJECT_LOGGER).setLevel(threshold)
