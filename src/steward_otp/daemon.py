"""``steward-otp run``: one node as a long-running process, stopped by SIGINT/SIGTERM.

The first SIGINT or SIGTERM stops the node gracefully: processes stop in reverse start
order, each within its shutdown grace, and everything accepted is either finished or safely
on disk (the store is the last thing to stop before the broker). If that takes longer than
``shutdown_deadline`` seconds, or a second signal arrives, the node is cancelled hard and the
process exits with status 1 — durable state is intact either way.

Exit status: 0 after a requested stop, 1 when the supervision tree gave up (escalation) or the
stop had to be forced.

``steward-otp run`` parses its command line, validates and saves the configuration, then
replaces itself (``exec``, same process id) with :func:`main`, which reads that configuration
back and runs the node: the daemon does not keep the command-line machinery in memory (typer
and the pydantic it loads to convert option values cost ~10 MB of resident memory).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

import trio

from steward_otp.config import Config, ConfigError
from steward_otp.config_env import load_effective
from steward_otp.handlers.base import Handler
from steward_otp.logs import configure_logging
from steward_otp.node import Node

log = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_DEADLINE = 20.0
EXIT_FORCED = 1
EXIT_USAGE = 2


def run_daemon(
    config: Config,
    *,
    handlers: Iterable[Handler] = (),
    shutdown_deadline: float = DEFAULT_SHUTDOWN_DEADLINE,
) -> int:
    """Run the node of ``config`` (serving ``handlers`` too) until a signal stops it.

    Returns the exit status.
    """
    return trio.run(
        functools.partial(serve, config, handlers=handlers, shutdown_deadline=shutdown_deadline)
    )


async def serve(
    config: Config,
    *,
    handlers: Iterable[Handler] = (),
    shutdown_deadline: float = DEFAULT_SHUTDOWN_DEADLINE,
) -> int:
    """The daemon's main task: the node, its signal handling and its ready line."""
    started = time.monotonic()
    node = Node(config, handlers=handlers)
    status = EXIT_FORCED
    with trio.CancelScope() as run_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signals, node, run_scope, shutdown_deadline)
            nursery.start_soon(_announce_ready, node, started)
            status = await node.run()
            nursery.cancel_scope.cancel()
    if run_scope.cancelled_caught:
        log.error(
            "node %s: stop forced after %s s; exiting with status 1",
            node.node_name,
            shutdown_deadline,
        )
        return EXIT_FORCED
    log.info("node %s stopped with status %d", node.node_name, status)
    return status


async def _stop_on_signals(node: Node, run_scope: trio.CancelScope, deadline: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("node %s: %s received, stopping", node.node_name, signal.Signals(signum).name)
            node.stop()
            break
        with trio.move_on_after(deadline):
            async for signum in signals:
                log.warning(
                    "node %s: second %s, forcing stop", node.node_name, signal.Signals(signum).name
                )
                break
        run_scope.cancel()
        # Processes finishing their shutdown shield themselves from cancellation, and a
        # blocked worker thread cannot be interrupted at all: give them a moment, then end
        # the process. Everything accepted is already on disk.
        await trio.sleep(1.0)
        log.error("node %s: stop did not finish; exiting with status 1", node.node_name)
        logging.shutdown()
        os._exit(EXIT_FORCED)


async def _announce_ready(node: Node, started: float) -> None:
    await node.ready.wait()
    log.info(
        "node %s ready in %.3f s (broker %s)", node.node_name, time.monotonic() - started, node.url
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """``steward-otp run`` after its command line: ``main(["--home", HOME])``.

    Runs the node configured in ``HOME/etc/config.toml`` (which ``steward-otp run`` has
    just validated and written) and the ``STEWARD_OTP_<NAME>`` environment variables
    (:mod:`steward_otp.config_env`; ``run`` removed those its options override), and exits
    with the daemon's status; 2 when the configuration no longer loads. Not a command for
    operators: ``steward-otp run`` is.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "--home":
        print("usage: steward-otp run [OPTIONS] (see steward-otp run --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    try:
        # Any warning was shown by ``steward-otp run`` when it read the same file.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = load_effective(Path(args[1]))  # the file and STEWARD_OTP_* variables
    except ConfigError as error:
        print(f"steward-otp: error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    configure_logging(config.log_level, config.log_console_timestamps)
    try:
        status = run_daemon(config)
    except ConfigError as error:  # e.g. a damaged signing key found while building the node
        print(f"steward-otp: error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    raise SystemExit(status)


if __name__ == "__main__":
    main()
