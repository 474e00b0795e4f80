"""What a handler is: the ``@handler`` decorator, the context a handler runs with, its errors.

A handler is ``async def fn(ctx: HandlerContext, msg: Message) -> bytes | None``. It runs in
its own task, under the message's ``methodTimeout``, inside the subscriber process of its
method. What it returns becomes the reply (``None``: no reply; ``b""``: an empty reply, as
REQPing sends). Streaming handlers call ``await ctx.reply(chunk)`` as often as they like and
return ``None``.

Failures:

* ``raise HandlerError("text")`` — an expected failure: the text goes back as an error reply
  (to ``<fileName>.error``) and to the central error log. The subscriber keeps running.
* any other exception — a bug: reported the same way (``handler crashed: ...``); the run
  ends there, like a crashing temporary worker in OTP, and is counted in the subscriber's
  live info (``handler_crashes``). The subscriber and its other runs carry on.

A reply too large for the broker never goes out and never crashes anything (see
:func:`sized_reply`): an error reply is cut to fit, with a marker; any other reply is
refused with :class:`ReplyTooLarge`, an expected failure like any HandlerError.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import attrs
import trio

from steward_otp.limits import (
    WIRE_HEADROOM,
    current_max_payload,
    encoded_size,
    max_encoded_bytes,
    surely_fits,
)
from steward_otp.logs import LogLevel
from steward_otp.message import Message, build_reply
from steward_otp.methods import BUILTIN_METHODS, EventKind, MethodSpec

Level = LogLevel
"""How serious a report to the error kernel is (a console :data:`~steward_otp.logs.LogLevel`)."""

_HANDLERS_LOG = logging.getLogger("steward_otp.handlers")
"""The logger handlers get by default (looked up once, not per message)."""


class HandlerError(Exception):
    """An expected failure of a handler; its text is sent back as an error reply."""


class ReplyTooLarge(HandlerError):
    """A handler's output does not fit in one message; the text says how large it is, the
    limit, and what to do instead."""


_CUT_MARKER = "\n… [cut: the error text is {size} bytes, more than one message carries]\n"


def sized_reply(request: Message, output: bytes, *, error: bool = False) -> Message | None:
    """:func:`~steward_otp.message.build_reply`, made to fit the broker's ``max_payload``.

    An error reply (``error=True``) too large is cut to fit, ending in a marker with its
    full size (it is text for a person). Any other reply too large raises
    :class:`ReplyTooLarge`: cutting a result would pass on incomplete data as if it were
    whole. Either way nothing is submitted that the outbox would refuse.
    """
    reply = build_reply(request, output, error=error)
    if reply is None or surely_fits(reply, spare=_FILLED_IN):  # no encoding on this path
        return reply
    room = _room(reply)
    if len(output) <= room:
        return reply
    if error:
        marker = _CUT_MARKER.format(size=len(output)).encode()
        kept = output[: max(room - len(marker), 0)].decode("utf-8", "ignore").encode()
        return attrs.evolve(reply, data=kept + marker)
    max_payload = current_max_payload()
    raise ReplyTooLarge(
        f"the output is {len(output)} bytes, more than one reply can carry ({max(room, 0)} "
        f"bytes here: the broker's max_payload of {max_payload} bytes less {WIRE_HEADROOM} "
        "for headers and ids and the reply's other fields); nothing of it was sent. Write "
        'large output to a file on the node instead (e.g. ["bash", "-c", "<command> > '
        '/tmp/out.txt"]) and fetch it with REQCopySrc, or make the output smaller'
    )


_FILLED_IN: Final = 1024
"""Bytes kept for what the outbox adds to a reply (its id, fromNode, the signature: up to
about 750 bytes with node names of the longest and a batch signature's proof) and for the
CBOR header of its data."""


def _room(reply: Message) -> int:
    """What the reply's other fields (previousMessage above all) leave for its data."""
    return max_encoded_bytes() - encoded_size(attrs.evolve(reply, data=b"")) - _FILLED_IN


def reply_room(request: Message, *, most: int) -> int:
    """The most bytes of output one reply to ``request`` can carry now, at most ``most``
    (and at least 1): for handlers that send their output in pieces."""
    reply = build_reply(request, b"")
    if reply is None:
        return most
    return max(1, min(most, _room(reply)))


class NodeServices(Protocol):
    """What every handler may use of its node: ``ctx.services``. Implemented by the node
    (the object it hands its subscribers offers these members and no others); faked in unit
    tests.

    The node's capabilities are split by purpose, so a handler's type shows only what it
    may use:

    * :class:`NodeServices` -- the everyday ones, for every handler (built-in or custom):
      the node's name and folders, submitting messages, reporting to the error kernel,
      writing output files, and the two notes the liveness methods leave (``REQTest``'s
      event, ``REQHello``'s time).
    * :class:`SubscriberControl` -- starting and stopping subscribers and listing the
      process tree: for the ``REQOpProcess*`` handlers only.
    * :class:`QueueControl` -- control-socket requests (the outbox's queue): for the
      ``REQOpQueue*`` handlers only.

    The last two are not reachable from a :class:`HandlerContext`: the node gives them to
    the factories of the handlers that need them when it builds its handler table
    (:func:`steward_otp.handlers.process.process_handlers`,
    :func:`steward_otp.handlers.queue.queue_handlers`).
    """

    @property
    def node_name(self) -> str:
        """This node's name."""
        ...

    @property
    def home(self) -> Path:
        """This node's home folder (relative ``./`` directories resolve against it)."""
        ...

    @property
    def data_dir(self) -> Path:
        """The data folder handlers write results under."""
        ...

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        """Accept messages into the durable outbox; returns their ids once durable."""
        ...

    def report(self, level: Level, text: str) -> None:
        """Log ``text`` locally and forward it to the central error log. Never blocks."""
        ...

    def test_event(self, message: Message) -> None:
        """Hand a REQTest message to whoever listens in-process. Never blocks."""
        ...

    async def write_file(self, path: Path, data: bytes, *, append: bool) -> None:
        """Write ``data`` to ``path`` durably (fsync), appending or replacing."""
        ...

    async def write_many(
        self, writes: Mapping[Path, bytes], *, append: bool
    ) -> dict[Path, OSError | None]:
        """:meth:`write_file` of each ``(path, data)``, concurrently; returns per path None
        (on disk) or the error its write failed with."""
        ...

    def note_hello(self, node: str) -> None:
        """Remember that ``node`` said hello just now (for status and metrics)."""
        ...


class SubscriberControl(Protocol):
    """Control of a node's subscriber processes: for the ``REQOpProcess*`` handlers only.

    Given to :func:`~steward_otp.handlers.process.process_handlers` by the node that builds
    them; never part of a :class:`HandlerContext`. Implemented by
    :class:`steward_otp.node.subscriber_control.SubscriberProcesses`.
    """

    def process_list(self) -> str:
        """The node's live supervision tree as text, one line per process."""
        ...

    async def start_subscriber(self, method: str) -> str:
        """Start a subscriber for ``method`` on this node; returns a status line.

        Raises HandlerError when the node has no handler for ``method`` or one runs already.
        """
        ...

    async def stop_subscriber(self, method: str, node: str = "") -> str:
        """Stop and remove the subscriber for ``method`` (on subject node ``node``, default
        this node's name); returns a status line. Raises HandlerError when none runs or
        when it is one that keeps the node controllable (``REQOpProcess*``)."""
        ...


class QueueControl(Protocol):
    """Control-socket requests on a node: for the ``REQOpQueue*`` handlers only.

    Given to :func:`~steward_otp.handlers.queue.queue_handlers` by the node that builds
    them; never part of a :class:`HandlerContext`. Implemented by the node.
    """

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a control request, exactly as the node's control socket does."""
        ...


@attrs.frozen
class HandlerContext:
    """Everything a handler may use while handling one message.

    ``services`` offers the node's everyday capabilities (:class:`NodeServices`) and
    nothing else: process and queue control are given only to the handlers of those methods
    (see :class:`NodeServices`). ``deadline`` is the ``trio.current_time()`` value at which
    the handler is cancelled (``math.inf`` for ``methodTimeout: -1``).
    """

    services: NodeServices
    message: Message
    deadline: float = math.inf
    replies: list[Message] | None = None
    """When set, :meth:`reply` gathers replies here instead of submitting them; the caller
    makes them durable together with the message's completion."""
    logger: logging.Logger = attrs.field(default=_HANDLERS_LOG)

    @property
    def node_name(self) -> str:
        """This node's name."""
        return self.services.node_name

    @property
    def data_dir(self) -> Path:
        """The node's data folder."""
        return self.services.data_dir

    @property
    def seconds_left(self) -> float:
        """Seconds until the handler is cancelled (``math.inf`` when unlimited)."""
        return self.deadline - trio.current_time()

    async def reply(self, output: bytes, *, error: bool = False) -> None:
        """Send a reply carrying ``output`` now (used by handlers that answer more than once).

        Builds it exactly as Steward's reply builder; does nothing when the request wants no
        reply (``replyMethod: REQNone``) or is itself a reply. Returns once it is durable, or
        -- for a quick handler's context, whose ``replies`` is set -- once it is gathered to
        be stored with the message's completion. Output too large for one message raises
        :class:`ReplyTooLarge` (an error reply is cut to fit instead; see
        :func:`sized_reply`).
        """
        reply = sized_reply(self.message, output, error=error)
        if reply is None:
            return
        if self.replies is not None:
            self.replies.append(reply)
        else:
            await self.services.submit([reply])

    def report(self, level: Level, text: str) -> None:
        """Send ``text`` to the local log and the central error log."""
        self.services.report(level, text)


HandlerFunc = Callable[[HandlerContext, Message], Awaitable[bytes | None]]

BatchResult = bytes | HandlerError | None
"""What one message of a batch came to: its output (None: no reply) or its HandlerError."""

BatchFunc = Callable[[NodeServices, Sequence[Message]], Awaitable[list[BatchResult]]]
"""Runs a quick handler for a whole batch at once; see :func:`handler`'s ``batch``."""


@attrs.frozen
class Handler:
    """A method and the coroutine function that handles it.

    ``batch``, when set, handles a whole batch of a quick method's messages in one call
    (see :func:`handler`); ``func`` still handles single messages (scheduled ones, and
    every caller that has one message). ``info``, when set, tells what the handler has under
    way (e.g. a copy's progress): the Subscriber serving it shows it in the tree's info
    under ``"handler"``.
    """

    method: MethodSpec
    func: HandlerFunc
    batch: BatchFunc | None = None
    info: Callable[[], Mapping[str, object]] | None = None

    @property
    def name(self) -> str:
        """The method name."""
        return self.method.name

    async def __call__(self, ctx: HandlerContext, message: Message) -> bytes | None:
        return await self.func(ctx, message)


def handler(
    name: str,
    *,
    kind: Literal["ACK", "NACK"] | EventKind | None = None,
    reply_capable: bool | None = None,
    description: str | None = None,
    args: str | None = None,
    quick: bool | None = None,
    batch: BatchFunc | None = None,
) -> Callable[[HandlerFunc], Handler]:
    """Declare a handler for method ``name``.

    For a built-in method (one in :data:`~steward_otp.methods.BUILTIN_METHODS`) the method
    table is the one place its contract is written: every field left out (``None``) comes
    from there, and a value given that differs from the table raises ``ValueError`` naming
    the method, the field and both values. A built-in method that is never sent as a request
    (``REQNone``, ``REQInitial``) cannot have a handler (``ValueError`` as well). For any
    other method the values given are its spec, with these defaults: ``kind="ACK"``,
    ``reply_capable=False``, ``description=""``, ``args=""``, ``quick=False``.

    ``kind`` names the subject's event token (``ACK`` → ``EventACK``); whether delivery is
    acknowledged is still decided per message by its ``ACKTimeout``. ``reply_capable``
    allows the method in a message's ``replyMethod``. ``quick`` declares a handler that
    finishes in a moment without waiting on other nodes or processes: it runs with the batch
    its message arrived in (a slow "quick" handler holds up its whole subscription). The
    decorated function is wrapped in a
    :class:`Handler`; pass it to a node (``Node(config, handlers=[...])``) to serve it.

    ``batch`` (quick handlers only) is ``async def fn(services, messages) -> list[result]``:
    it handles a whole batch at once, with the same effects as calling the function on each
    message in order, and returns one result per message, in order -- the output (``bytes``
    becomes the reply, ``None`` means none) or the ``HandlerError`` that message failed
    with. Any other exception is a bug: the Subscriber then runs each message of the batch
    alone with the single-message function, so only a message that crashes that too fails
    (and the Subscriber restarts, as for any crash); the batch function must therefore be
    safe to repeat for the messages it saw. The Subscriber runs it under the earliest
    ``methodTimeout`` of the batch; running out fails every message of the batch with a
    timeout. Raises ``ValueError`` for a ``batch`` of a method that is not quick.
    """
    event = kind if kind is None or isinstance(kind, EventKind) else EventKind(f"Event{kind}")
    spec = BUILTIN_METHODS.lookup(name)
    if spec is not None and spec.name == name:
        _check_builtin(
            spec,
            kind=event,
            reply_capable=reply_capable,
            description=description,
            args=args,
            quick=quick,
        )
    else:
        spec = MethodSpec(
            name=name,
            kind=event or EventKind.EventACK,
            reply_capable=bool(reply_capable),
            description=description or "",
            args=args or "",
            quick=bool(quick),
        )
    if batch is not None and not spec.quick:
        raise ValueError(f"handler {name}: batch= needs quick=True (only quick ones are batched)")
    method: MethodSpec = spec

    def decorate(func: HandlerFunc) -> Handler:
        return Handler(method=method, func=func, batch=batch)

    return decorate


def _check_builtin(spec: MethodSpec, **given: object) -> None:
    """Raise ValueError when a handler of built-in method ``spec`` may not be declared so."""
    if not spec.routable:
        raise ValueError(
            f"handler {spec.name}: the built-in method {spec.name} is never sent as a "
            "request, so no handler can serve it"
        )

    def shown(value: object) -> str:
        return repr(str(value) if isinstance(value, EventKind) else value)

    differ = [
        f"{field}={shown(value)} differs from the method table's {shown(getattr(spec, field))}"
        for field, value in given.items()
        if value is not None and value != getattr(spec, field)
    ]
    if differ:
        raise ValueError(
            f"handler {spec.name}: {'; '.join(differ)}: a built-in method's kind, "
            "reply_capable, description, args and quick come from steward_otp.methods "
            "(BUILTIN_METHODS); leave them out of @handler(...)"
        )


class HandlerTable:
    """The handlers a node serves, by method name. Later entries replace earlier ones."""

    def __init__(self, handlers: Iterable[Handler] = ()) -> None:
        self._by_name: dict[str, Handler] = {}
        for h in handlers:
            self._by_name[h.name] = h

    def get(self, method: str) -> Handler | None:
        """The handler for ``method``, or None."""
        return self._by_name.get(method)

    def __iter__(self) -> Iterator[Handler]:
        return iter(list(self._by_name.values()))

    def __contains__(self, method: object) -> bool:
        return method in self._by_name

    def names(self) -> list[str]:
        """Method names in registration order."""
        return list(self._by_name)
