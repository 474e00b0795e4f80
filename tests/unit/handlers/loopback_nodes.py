"""Real nodes in one process, talking through an in-memory broker (no nats-server).

:class:`LoopbackNet` is one :class:`~steward_otp.loopback.LoopbackBroker` and the nodes made
on it: ``net.node("central")`` is a full :class:`~steward_otp.node.Node` (store, outbox,
subscribers, error log) whose transport is a :class:`~steward_otp.loopback.LoopbackTransport`
on the shared broker. Start nodes as the integration tests do: ``async with central, ship1:``.

The ``net`` and ``pair`` fixtures (``conftest.py``) give a fresh network under ``tmp_path``
and the two usual nodes, ``central`` (also the central error logger) and ``ship1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from steward_otp.handlers.base import Handler
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import Message
from steward_otp.node import Node
from tests.nodes import file_text, node_config, wait_for

__all__ = [
    "UNUSED_URL",
    "LoopbackNet",
    "file_text",
    "message",
    "subscriber_restarts",
    "wait_for",
    "wait_for_exact",
    "wait_for_text",
]

UNUSED_URL = "nats://127.0.0.1:1"
"""Given as the broker address; a node with a transport of its own never connects to it."""

QUIET = {"enable_socket": False, "enable_read_folder": False}
"""No message socket and no read folder: nothing the tests use, and less to start."""


class LoopbackNet:
    """One in-memory broker and the nodes on it, with homes ``<base>/<name>``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.broker = LoopbackBroker()
        self.transports: dict[str, LoopbackTransport] = {}

    def node(self, name: str, handlers: Sequence[Handler] = (), **overrides: Any) -> Node:
        """A node named ``name`` on this network (not started), with ``handlers`` besides
        the built-in ones; ``overrides`` go to its configuration, as with
        ``tests.nodes.node_config``."""
        config = node_config(self.base, name, UNUSED_URL, **{**QUIET, **overrides})
        transport = LoopbackTransport(self.broker, name=name)
        self.transports[name] = transport
        return Node(config, transport=transport, handlers=list(handlers))

    def data(self, node: str) -> Path:
        """``node``'s data folder."""
        return self.base / node / "data"

    def home(self, node: str) -> Path:
        """``node``'s home folder."""
        return self.base / node

    def result(
        self, directory: str, file_name: str, *, on: str = "central", ran: str = "ship1"
    ) -> Path:
        """Where a reply to a request that ``ran`` on a node lands on node ``on``."""
        return self.data(on) / directory / ran / file_name

    def error_log(self) -> Path:
        """The central error log (kept by ``central``)."""
        return self.data("central") / "errorLog" / "errorCentral" / "error.log"


def message(method: str, args: Sequence[str] = (), **fields: Any) -> Message:
    """A request from central to ship1; replies go to ``data/out/ship1/out.txt`` on central.

    Delivery is ACKed (``ACKTimeout`` 2 s, 3 retries); the method gets 10 s.
    """
    settings: dict[str, Any] = {
        "to_node": "ship1",
        "method": method,
        "method_args": tuple(args),
        "directory": "out",
        "file_name": "out.txt",
        "ack_timeout": 2,
        "retries": 3,
        "reply_ack_timeout": 2,
        "reply_retries": 3,
        "method_timeout": 10,
        "reply_method": "REQToFileAppend",
    }
    settings.update(fields)
    return Message(**settings)


async def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    """Wait until ``path`` contains ``text``; return the file's text then."""
    await wait_for(lambda: text in file_text(path), timeout=timeout)
    return file_text(path)


async def wait_for_exact(path: Path, text: str, timeout: float = 10.0) -> None:
    """Wait until ``path`` holds exactly ``text``."""
    await wait_for(lambda: file_text(path) == text, timeout=timeout)


def subscriber_restarts(node: Node, method: str) -> int:
    """How often ``node``'s subscriber for ``method`` was restarted (-1: not running)."""
    entry = node.snapshot().find(f"node/inbound/{method}")
    if entry is None or entry.state != "running":
        return -1
    return entry.restart_count
