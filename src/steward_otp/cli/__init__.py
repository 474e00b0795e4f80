"""The ``steward-otp`` command line, one module per group of commands.

* :mod:`~steward_otp.cli.program` — the ``steward-otp`` application itself (``app``, and
  ``main``, the console script's entry point): ``run``, ``config check|show``, ``version``,
  and the sub-commands of the other modules (and of ``keys``, ``acl``, ``store``,
  ``broker-config``) attached to it.
* :mod:`~steward_otp.cli.common` — what every sub-command shares: the ``--home`` option,
  ``--json``, the sub-application's settings, the usage-error exit.
* :mod:`~steward_otp.cli.help` — ``--help`` with the options grouped by topic.
* :mod:`~steward_otp.cli.inspection` — ``tree``, ``status``, ``queue``, ``audit``: ask a
  running node over its control socket.
* :mod:`~steward_otp.cli.stream` — ``queue stream ls|cancel``: the messages waiting in the
  JetStream stream.
* :mod:`~steward_otp.cli.watch` — ``--watch SECONDS``: draw a view again until Ctrl-C.
* :mod:`~steward_otp.cli.send` — ``send`` and ``cmd``: hand messages to a running node and
  wait for the replies.
* :mod:`~steward_otp.cli.web` — ``web token``: the web view's access token.

``app``, ``main`` and the other names of :mod:`~steward_otp.cli.program` listed below are
importable from here (``steward_otp.cli:main`` is the console script). They are loaded on
first use: ``steward_otp.security.keys_cli`` and the other sub-command modules outside this
package import :mod:`~steward_otp.cli.common`, and the application imports them, so this
package itself must not import the application when it is loaded. The daemon
(:mod:`steward_otp.daemon`) imports nothing from here: it never loads typer.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward_otp.cli.program import HOME_PANEL, PROG, USAGE_ERROR, app, config_app, main

__all__ = ["HOME_PANEL", "PROG", "USAGE_ERROR", "app", "config_app", "main"]

_FROM_PROGRAM = frozenset({*__all__, "_METAVARS", "_daemon_argv"})
"""Names of :mod:`steward_otp.cli.program` read through this package (the two private ones
by the tests; a test replacing ``_start_node`` patches :mod:`~steward_otp.cli.program`)."""


def __getattr__(name: str) -> Any:
    """*name* of :mod:`steward_otp.cli.program`, which is imported on first use (PEP 562)."""
    if name not in _FROM_PROGRAM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module("steward_otp.cli.program"), name)
