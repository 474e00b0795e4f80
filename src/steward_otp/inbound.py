"""Inbound: one Subscriber per method, from the NATS subject to the handler and its reply.

For every message on ``<node>.<method>.<kind>`` (a queue subscription whose group is the
subject, so instances with the same node name share the load), in its own task:

1. decode (garbage: reported, dropped, not ACKed);
2. verify hooks (signatures and ACLs plug in here);
3. de-duplicate and persist: the store remembers the id *before* anything is ACKed;
4. ACK when the message asks for it (``ACKTimeout >= 1``) — also for a duplicate, whose
   first ACK was evidently lost;
5. only if the message is new: run the handler under ``methodTimeout`` (``-1`` = no limit),
   build the reply exactly as Steward's reply builder and submit it to the outbox; a message
   with a ``schedule`` runs again every interval until its total time is up.

Handler errors go back as error replies (``<fileName>.error``) and to the central error log.
An unexpected exception in a handler crashes the Subscriber, which its supervisor restarts;
the other Subscribers keep running.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from steward_otp import codec
from steward_otp.errors import ERROR_LOG_METHOD
from steward_otp.handlers.base import Handler, HandlerContext, HandlerError, NodeServices
from steward_otp.message import METHOD_TIMEOUT_FOREVER, Message, build_reply, uses_ack
from steward_otp.schedule import Schedule, ScheduleError, message_schedule, schedule_outcome
from steward_otp.store import Store
from steward_otp.supervisors import current_child
from steward_otp.transport import BridgeBusy, InboundMessage, Transport

log = logging.getLogger(__name__)


VerifyHook = Callable[[Message], Awaitable[str | None]]
"""Returns None to allow the message, or the reason it is refused."""


def method_deadline(message: Message, default_timeout: float) -> float:
    """The trio time at which a handler for ``message`` is cancelled."""
    timeout = message.method_timeout
    if timeout == METHOD_TIMEOUT_FOREVER:
        return math.inf
    if timeout < 1:
        timeout = int(default_timeout)
    return trio.current_time() + timeout


class HandlerCrashed(Exception):
    """A handler raised something other than HandlerError; the Subscriber crashes with it."""


class Subscriber:
    """Supervised process serving one method on one node name."""

    def __init__(
        self,
        handler: Handler,
        subject: str,
        *,
        bridge: Transport,
        store: Store,
        services: NodeServices,
        default_method_timeout: float,
        verify_hooks: Sequence[VerifyHook] = (),
        inbound_capacity: int | None = None,
    ) -> None:
        self.handler = handler
        self.subject = subject
        self.bridge = bridge
        self.store = store
        self.services = services
        self.default_method_timeout = default_method_timeout
        self.verify_hooks = tuple(verify_hooks)
        self.inbound_capacity = inbound_capacity
        self.received = 0
        self.duplicates = 0
        self.executed = 0

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and serve until cancelled; ready as soon as the subscription is queued.

        Raises when the bridge ends the subscription (the connection went away) or when a
        handler crashes; the supervisor restarts this process.
        """
        subscription = self.bridge.subscribe(
            self.subject, queue=self.subject, capacity=self.inbound_capacity
        )
        handle = current_child()
        handle.info_provider = lambda: {
            "subject": self.subject,
            "received": self.received,
            "duplicates": self.duplicates,
            "executed": self.executed,
            "dropped": subscription.dropped,
        }
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._recover, nursery)
                async for inbound in subscription.receive:
                    self.received += 1
                    nursery.start_soon(self._handle, inbound)
                raise ConnectionError(f"subscription {self.subject} ended: the bridge stopped")
        finally:
            self.bridge.unsubscribe(subscription)

    async def _recover(self, nursery: trio.Nursery) -> None:
        """Run the messages of this method that were accepted but never finished.

        They were ACKed (so their sender will not send them again) but the node stopped or
        this process crashed before their handler completed: they run now, once, each in its
        own task (one that runs for the life of the node does not hold up the others).
        """
        for row in await self.store.unfinished_inbound():
            if row.method != self.handler.name:
                continue
            try:
                message = codec.decode(row.payload, codec.RAW_CBOR_HEADERS)
            except codec.DecodeError as exc:
                await self.store.mark_inbound_done(row.msg_id, "error", f"undecodable: {exc}")
                continue
            log.info("%s: running %s again after an interruption", self.subject, row.msg_id)
            self.executed += 1
            nursery.start_soon(self.execute, message)

    async def _handle(self, inbound: InboundMessage) -> None:
        try:
            message = codec.decode(inbound.payload, inbound.headers)
        except codec.DecodeError as exc:
            self.services.report("error", f"error: decoding failed, subject: {self.subject}: {exc}")
            return
        if not message.id or not message.from_node:
            # Without an id nothing can be de-duplicated, without fromNode nobody gets the
            # reply: refuse it (no ACK) rather than risk running it twice.
            missing = "id" if not message.id else "fromNode"
            self.services.report(
                "error",
                f"error: {self.subject}: message from {message.from_node or '?'} refused: "
                f'field "{missing}" is empty; allowed: a steward-otp message with both set',
            )
            return
        for hook in self.verify_hooks:
            refusal = await hook(message)
            if refusal is not None:
                self.services.report("warning", f"error: {self.subject}: {refusal}")
                return
        headers = inbound.headers or {}
        stored = (
            inbound.payload
            if headers.get("cmp", "none") == "none"
            else codec.encode(message, compress_threshold=None).payload
        )
        new = await self.store.accept_inbound(message.id, message.from_node, message.method, stored)
        if uses_ack(message) and inbound.reply:
            # Outbound queue full: no ACK this time; the sender retries, dedupe stops a rerun.
            with contextlib.suppress(BridgeBusy):
                self.bridge.publish_nowait(inbound.reply, b"")
        if not new:
            self.duplicates += 1
            return
        self.executed += 1
        await self.execute(message)

    async def execute(self, message: Message) -> None:
        """Run the handler for ``message`` (already accepted), send its replies, mark it done.

        A scheduled message (``schedule: [interval, total]``, or the deprecated
        ``REQHttpGetScheduled``) runs once now, then every ``interval`` seconds until
        ``total`` seconds have passed; runs may overlap, each has its own ``methodTimeout``
        and its own replies, and the message is marked done when the last run has ended.
        Cancellation (the node or this subscriber stops) leaves the message unfinished, so
        it runs again, schedule and all, when the subscriber starts again.
        """
        outcome: str | None = None
        reason: str | None = None
        try:
            try:
                schedule = message_schedule(message)
            except ScheduleError as exc:
                outcome, reason = "error", str(exc)
                ctx = HandlerContext(services=self.services, message=message)
                await self._fail(ctx, message, f"error: {message.method}: {exc}")
                return
            if schedule is None:
                outcome, reason = await self._run_once(message)
            else:
                outcome, reason = await self._run_schedule(message, schedule)
        except HandlerCrashed as exc:
            outcome, reason = "crash", repr(exc.__cause__)
            raise
        finally:
            if outcome is not None:
                with trio.CancelScope(shield=True):
                    await self.store.mark_inbound_done(message.id, outcome, reason)

    async def _run_once(self, message: Message) -> tuple[str, str | None]:
        """One run of the handler under ``methodTimeout``: (outcome, reason) for the store."""
        deadline = method_deadline(message, self.default_method_timeout)
        ctx = HandlerContext(services=self.services, message=message, deadline=deadline)
        try:
            output: bytes | None = None
            with trio.CancelScope(deadline=deadline) as scope:
                output = await self.handler(ctx, message)
            if scope.cancelled_caught:
                text = (
                    f"error: {message.method}: method timed out: [{' '.join(message.method_args)}]"
                )
                await self._fail(ctx, message, text)
                return "timeout", "timeout"
            if output is not None:
                await ctx.reply(output)
            return "ok", None
        except HandlerError as exc:
            await self._fail(ctx, message, f"error: {message.method}: {exc}")
            return "error", str(exc)
        except Exception as exc:
            await self._fail(ctx, message, f"error: {message.method}: handler crashed: {exc!r}")
            raise HandlerCrashed(f"handler for {message.method} crashed: {exc!r}") from exc

    async def _run_schedule(self, message: Message, schedule: Schedule) -> tuple[str, str | None]:
        """Start a run at each offset of ``schedule``; return once every run has ended.

        A crashing run stops the schedule and its HandlerCrashed is raised here.
        """
        outcomes: list[tuple[str, str | None]] = []
        crashes: list[HandlerCrashed] = []

        async def run(nursery: trio.Nursery) -> None:
            try:
                outcomes.append(await self._run_once(message))
            except HandlerCrashed as exc:
                crashes.append(exc)
                nursery.cancel_scope.cancel()

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for offset in schedule.offsets():
                await trio.sleep_until(start + offset)
                nursery.start_soon(run, nursery)
        if crashes:
            raise crashes[0]
        return schedule_outcome(outcomes)

    async def _fail(self, ctx: HandlerContext, message: Message, text: str) -> None:
        if message.method == ERROR_LOG_METHOD:
            # Reporting a failure of the error log to the error log would loop forever.
            log.error("%s", text)
            return
        self.services.report("error", text)
        reply = build_reply(message, text.encode() + b"\n", error=True)
        if reply is not None:
            await self.services.submit([reply])
