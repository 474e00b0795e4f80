"""A fake node for calling handlers directly: the node's capabilities, recorded.

:class:`FakeServices` implements the three capability Protocols of
:mod:`steward_otp.handlers.base` -- :class:`~steward_otp.handlers.base.NodeServices` (what
every handler gets as ``ctx.services``), :class:`~steward_otp.handlers.base.SubscriberControl`
(given to ``process_handlers``) and :class:`~steward_otp.handlers.base.QueueControl` (given
to ``queue_handlers``) -- and records everything a handler hands to its node -- submitted
messages, reports, test events, written files, hellos, control requests, subscriber starts
and stops -- so a test can call ``await handler(ctx, msg)`` and look at what happened,
without a node, a store or a broker. :func:`context` builds the :class:`HandlerContext`
around it and :func:`request` a message as the node would have received it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from steward_otp.handlers.base import (
    HandlerContext,
    HandlerError,
    Level,
    NodeServices,
    QueueControl,
    SubscriberControl,
)
from steward_otp.message import Message

__all__ = ["FakeServices", "Write", "context", "request"]

ControlAnswer = Callable[[Mapping[str, Any]], dict[str, Any]]


@attrs.frozen
class Write:
    """One call of :meth:`FakeServices.write_file`."""

    path: Path
    data: bytes
    append: bool


def _no_control(request: Mapping[str, Any]) -> dict[str, Any]:
    return {"ok": False, "error": f"no control answer configured for {dict(request)!r}"}


@attrs.define(eq=False)
class FakeServices:
    """Records what handlers ask of their node; see the module docstring.

    ``files`` holds the content every written path would have (appends joined), ``writes``
    each call in order. Set ``write_error`` / ``submit_error`` to make the next calls of
    ``write_file`` / ``submit`` raise it; ``control_answer`` answers ``control`` requests;
    ``subscribers`` are the methods whose subscribers "run" (``start_subscriber`` and
    ``stop_subscriber`` behave as the node's do: a duplicate start or a missing stop is a
    HandlerError).
    """

    home: Path
    node_name: str = "ship1"
    handlers: tuple[str, ...] = ("REQPing", "REQHello", "REQCliCommand", "REQOpProcessStop")
    subscribers: set[str] = attrs.field(factory=lambda: {"REQPing", "REQOpProcessStop"})
    tree: str = "PROCESS KIND STATE\nnode rest_for_one running\n"
    control_answer: ControlAnswer = _no_control
    write_error: OSError | None = None
    submit_error: Exception | None = None

    submitted: list[Message] = attrs.field(factory=list)
    reports: list[tuple[Level, str]] = attrs.field(factory=list)
    test_events: list[Message] = attrs.field(factory=list)
    writes: list[Write] = attrs.field(factory=list)
    files: dict[Path, bytes] = attrs.field(factory=dict)
    hellos: list[str] = attrs.field(factory=list)
    control_requests: list[dict[str, Any]] = attrs.field(factory=list)
    started: list[str] = attrs.field(factory=list)
    stopped: list[tuple[str, str]] = attrs.field(factory=list)

    @property
    def data_dir(self) -> Path:
        """``<home>/data``, as a node's default configuration has it."""
        return self.home / "data"

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        await trio.lowlevel.checkpoint()
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.extend(messages)
        return [m.id or f"fake-{len(self.submitted)}-{i}" for i, m in enumerate(messages)]

    def report(self, level: Level, text: str) -> None:
        self.reports.append((level, text))

    def test_event(self, message: Message) -> None:
        self.test_events.append(message)

    async def write_file(self, path: Path, data: bytes, *, append: bool) -> None:
        await trio.lowlevel.checkpoint()
        if self.write_error is not None:
            raise self.write_error
        self.writes.append(Write(path, data, append))
        self.files[path] = (self.files.get(path, b"") if append else b"") + data

    async def write_many(
        self, writes: Mapping[Path, bytes], *, append: bool
    ) -> dict[Path, OSError | None]:
        results: dict[Path, OSError | None] = {}
        for path, data in writes.items():
            try:
                await self.write_file(path, data, append=append)
            except OSError as exc:
                results[path] = exc
            else:
                results[path] = None
        return results

    def note_hello(self, node: str) -> None:
        self.hellos.append(node)

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        self.control_requests.append(dict(request))
        return self.control_answer(request)

    def process_list(self) -> str:
        return self.tree

    async def start_subscriber(self, method: str) -> str:
        await trio.lowlevel.checkpoint()
        if method not in self.handlers:
            raise HandlerError(f"OpProcessStart: {method!r} is not a method this node handles")
        if method in self.subscribers:
            raise HandlerError(f"OpProcessStart: a subscriber for {method} runs already")
        self.subscribers.add(method)
        self.started.append(method)
        return f"info: OpProcessStart: started {method}\n"

    async def stop_subscriber(self, method: str, node: str = "") -> str:
        await trio.lowlevel.checkpoint()
        if method not in self.subscribers:
            raise HandlerError(f"OpProcessStop: did not find process to stop: {method}")
        self.subscribers.discard(method)
        self.stopped.append((method, node))
        return f"info: OpProcessStop: process stopped {method} on {node or self.node_name}\n"

    # -------------------------------------------------------------- for the tests' asserts

    def reported(self, level: Level | None = None) -> list[str]:
        """The texts reported (at ``level``, or at any level)."""
        return [text for lvl, text in self.reports if level is None or lvl == level]

    def submitted_data(self, method: str | None = None) -> list[bytes]:
        """The ``data`` of each submitted message (with ``method``, or any)."""
        return [m.data for m in self.submitted if method is None or m.method == method]


def _is_node_services(services: FakeServices) -> NodeServices:
    """Static check (mypy) that the fake satisfies the Protocol; unused at run time."""
    return services


def _is_subscriber_control(services: FakeServices) -> SubscriberControl:
    """Static check (mypy) that the fake satisfies the Protocol; unused at run time."""
    return services


def _is_queue_control(services: FakeServices) -> QueueControl:
    """Static check (mypy) that the fake satisfies the Protocol; unused at run time."""
    return services


def request(method: str, *args: str, **fields: Any) -> Message:
    """``method`` from central to ship1 as ship1's subscriber hands it to the handler."""
    settings: dict[str, Any] = {
        "id": "central:test-1",
        "from_node": "central",
        "to_node": "ship1",
        "method": method,
        "method_args": args,
        "directory": "out",
        "file_name": "out.txt",
        "ack_timeout": 5,
        "retries": 3,
        "method_timeout": 10,
        "reply_method": "REQToFileAppend",
    }
    settings.update(fields)
    return Message(**settings)


def context(
    services: FakeServices,
    message: Message,
    *,
    seconds: float = math.inf,
    gather_replies: bool = False,
) -> HandlerContext:
    """The context ship1's subscriber would give a handler for ``message``.

    ``seconds``: the method timeout from now (``math.inf``: none). ``gather_replies``: a
    quick handler's context, whose replies go to ``ctx.replies`` instead of ``submit``.
    """
    deadline = trio.current_time() + seconds if math.isfinite(seconds) else math.inf
    return HandlerContext(
        services=services,
        message=message,
        deadline=deadline,
        replies=[] if gather_replies else None,
    )
