"""Serve an ASGI application with hypercorn's Trio worker on one ``HOST:PORT``.

Every HTTP service of a node (the HTTP input, the metrics listener, the data-folder view,
the web view) is started through :func:`serve_asgi`, so they share one behaviour:

* ready (``task_status.started(urls)``) only once the socket listens, with the bound URLs;
* an address that cannot be bound fails the start with :class:`ServeError`, whose message
  names the setting, the address and the reason; an error after the start is not rewritten;
* no access log, no ``Server`` header, errors to the caller's logger, a one-second
  graceful close when cancelled, and half-sent requests dropped after ``read_timeout``.

hypercorn is imported when a server starts, so a node that serves nothing never loads it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeVar, cast

import trio

from steward_otp.supervisors.errors import leaf_exceptions

_E = TypeVar("_E", bound=BaseException)

if TYPE_CHECKING:
    import hypercorn.config

_DEFAULT_READ_TIMEOUT = 60


class ServeError(OSError):
    """A service could not listen on its address; ``str()`` says which setting and why.

    ``reason`` is the operating system's own words ("Address already in use").
    """

    def __init__(self, errno: int | None, message: str, reason: str) -> None:
        super().__init__(errno, message)
        self.reason = reason


def first_of(failure: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of type ``kind`` in ``failure`` (through nested groups)."""
    return next((e for e in leaf_exceptions(failure) if isinstance(e, kind)), None)


def bind_spec(host: str | None, port: int) -> str:
    """hypercorn's bind string: all interfaces for ``None``, brackets around IPv6."""
    if host is None:
        host = "0.0.0.0"
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def hypercorn_config(
    bind: str, error_logger: logging.Logger, *, read_timeout: int = _DEFAULT_READ_TIMEOUT
) -> hypercorn.config.Config:
    """The server settings every service uses (see the module docstring)."""
    import hypercorn.config  # noqa: PLC0415

    config = hypercorn.config.Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = error_logger
    config.include_server_header = False
    config.graceful_timeout = 1.0
    config.read_timeout = read_timeout
    return config


class _ListeningStatus(trio.TaskStatus[list[str]]):
    """Passes hypercorn's "listening" on to the start, remembering that it came."""

    def __init__(self, task_status: trio.TaskStatus[list[str]]) -> None:
        self.task_status = task_status
        self.listening = False

    def started(self, value: list[str] | None = None) -> None:
        self.listening = True
        self.task_status.started(value or [])


async def serve_asgi(
    app: object,
    bind: str,
    *,
    setting: str,
    error_logger: logging.Logger,
    doing: str = "listen",
    hint: str = "give a free HOST:PORT, or an empty value to turn it off",
    error_type: type[ServeError] = ServeError,
    read_timeout: int = _DEFAULT_READ_TIMEOUT,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``bind`` (``HOST:PORT`` as hypercorn takes it) until cancelled.

    Reports the bound URLs through ``task_status`` once listening. When the address cannot
    be bound, raises ``error_type`` (a :class:`ServeError`): "``setting`` = 'ADDRESS': cannot
    ``doing``: REASON; ``hint``".
    """
    import hypercorn.trio  # noqa: PLC0415

    config = hypercorn_config(bind, error_logger, read_timeout=read_timeout)
    status = _ListeningStatus(task_status)
    try:
        # The apps speak plain-dict ASGI; hypercorn's TypedDict signature is the same protocol.
        await hypercorn.trio.serve(cast("Any", app), config, task_status=status)
    except (OSError, BaseExceptionGroup) as failure:
        cause = None if status.listening else first_of(failure, OSError)
        if cause is None:
            raise
        reason = cause.strerror or str(cause)
        raise error_type(
            cause.errno, f"{setting} = {bind!r}: cannot {doing}: {reason}; {hint}", reason
        ) from failure


__all__ = ["ServeError", "bind_spec", "first_of", "hypercorn_config", "serve_asgi"]
