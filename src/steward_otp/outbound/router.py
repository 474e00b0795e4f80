"""The Router: hands each durable message to the Publisher of its destination."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from steward_otp import codec
from steward_otp.handlers.base import Level
from steward_otp.message import (
    Message,
)
from steward_otp.outbound.outbox import FULL_RETRY_MIN, Dispatch, Outbox, RouterMail
from steward_otp.store import StoreFull
from steward_otp.store.records import OutboxRow
from steward_otp.supervisors import ChildStartError, DynamicSupervisor
from steward_otp.supervisors.handle import current_child_or_none

log = logging.getLogger(__name__)


class Router:
    """Supervised process: hands each durable message to the Publisher of its destination.

    On start, and every ``sweep_interval`` seconds, it reads the undelivered messages from
    the store (oldest first) and routes those no Publisher holds, so messages survive crashes
    of any outbound process and of the whole node. A stored message that can no longer be
    decoded (a damaged row) is marked failed with the reason and reported once through
    ``report``; it is never skipped silently on every sweep, nor allowed to stop the others.

    A full disk stops neither: a sweep whose read is refused (:class:`StoreFull`) is made
    again after :data:`FULL_RETRY_MIN` .. ``sweep_interval`` seconds (the start sweep too:
    the Router is ready without it), and a damaged row whose mark is refused stays in the
    outbox, is failed by a later sweep and reported once that mark commits.
    """

    def __init__(
        self,
        outbox: Outbox,
        publishers: DynamicSupervisor,
        *,
        sweep_interval: float = 5.0,
        report: Callable[[Level, str], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.publishers = publishers
        self.sweep_interval = sweep_interval
        self.report = report
        self._held: set[str] = set()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Route until cancelled. Ready once the recovery list is routed, or once reading it
        met a full disk (the next sweeps route it)."""
        self._held = set()
        handle = current_child_or_none()
        if handle is not None:
            handle.info_provider = self.info
        swept = await self._sweep()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep_periodically, swept)
            async for mail in self.outbox.mail_receive:
                await self._handle_mail(self._with_waiting_mail(mail))

    def info(self) -> dict[str, object]:
        """What the tree snapshot shows (and the metrics read): the outbox's delivery counters
        (:class:`DeliveryStats`, counted since the node started), the messages waiting in the
        mailbox and the messages the Publishers hold."""
        stats = self.outbox.stats
        return {
            "accepted": stats.accepted,
            "delivered": stats.delivered,
            "failed": stats.failed,
            "missed_acks": stats.missed_acks,
            "mailbox": self.outbox.mail_send.statistics().current_buffer_used,
            "held": len(self._held),
        }

    def _with_waiting_mail(self, first: RouterMail) -> list[RouterMail]:
        """``first`` and whatever else waits in the mailbox, up to ROUTER_BATCH items."""
        batch = [first]
        while len(batch) < ROUTER_BATCH:
            try:
                batch.append(self.outbox.mail_receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return batch

    async def _handle_mail(self, batch: Sequence[RouterMail]) -> None:
        """Act on ``batch`` as if item by item, in order, routing the Dispatches together."""
        dispatched: dict[str, Message] = {}
        for mail in batch:
            if isinstance(mail, Dispatch):
                dispatched.setdefault(mail.message.id, mail.message)
                continue
            if mail.msg_id in dispatched:
                # Its Dispatch came first: route what came before this Finished first.
                await self._route(list(dispatched.values()))
                dispatched = {}
            self._held.discard(mail.msg_id)
        if dispatched:
            await self._route(list(dispatched.values()))

    async def _sweep_periodically(self, swept: bool) -> None:
        delay = FULL_RETRY_MIN
        while True:
            if swept:
                delay = FULL_RETRY_MIN
                await trio.sleep(self.sweep_interval)
            else:
                await trio.sleep(min(delay, self.sweep_interval))
                delay = min(2 * delay, self.sweep_interval)
            swept = await self._sweep()

    async def _sweep(self) -> bool:
        """Route what the outbox holds and no Publisher does; False if a read met a full
        disk (the rest is routed by the next sweep).

        It reads the ids of the undelivered messages first and the rows (payloads) only of
        those no Publisher holds: with a large backlog for an absent node a sweep costs a
        read of ids, not of every payload.
        """
        store = self.outbox.store
        try:
            unheld = [msg_id for msg_id in await store.pending_ids() if msg_id not in self._held]
            for i in range(0, len(unheld), ROUTER_BATCH):
                messages = []
                for row in await store.pending_rows(unheld[i : i + ROUTER_BATCH]):
                    if row.msg_id in self._held:  # routed since the ids were read
                        continue
                    try:
                        messages.append(codec.decode(row.payload, codec.RAW_CBOR_HEADERS))
                    except codec.DecodeError as exc:
                        await self._fail_undecodable(row, exc)
                await self._route(messages)
        except StoreFull as exc:
            log.warning("outbox sweep refused for a full disk, made again shortly: %s", exc)
            return False
        return True

    async def _fail_undecodable(self, row: OutboxRow, exc: codec.DecodeError) -> None:
        text = (
            f"error: outbox message {row.msg_id} for {row.to_node}.{row.method} cannot be "
            f"decoded from the store, marked failed: {exc}"
        )
        try:
            failed = await self.outbox.store.mark_failed(row.msg_id, text)
        except StoreFull as full:
            # Still active in the outbox: the next sweep finds it and fails it again.
            log.warning("%s; not marked yet: %s", text, full)
            return
        log.error("%s", text)
        if failed:
            self.outbox.stats.failed += 1
        if self.report is not None:
            self.report("error", text)

    async def _route(self, messages: Sequence[Message]) -> None:
        """Hand each of ``messages`` not held yet to the Publisher of its destination.

        The Publishers that do not run yet are started together, PUBLISHER_STARTS_AT_ONCE
        at a time (``start_children``), not one after another. A Publisher that fails to
        start crashes the Router, as one start at a time did, after the others have their
        messages (every message stays in the store; the restarted Router sweeps it).
        """
        by_publisher: dict[str, list[Message]] = {}
        for message in messages:
            if message.id in self._held:
                continue
            self._held.add(message.id)
            key = publisher_id(message.to_node, message.method, message.jetstream)
            by_publisher.setdefault(key, []).append(message)
        to_start: dict[str, list[Message]] = {}
        for key, held in by_publisher.items():
            inbox = self.publishers.whereis(key)
            if inbox is None or not _hand_over(inbox, held):
                to_start[key] = held
        failure: ChildStartError | None = None
        waiting = list(to_start.items())
        for i in range(0, len(waiting), PUBLISHER_STARTS_AT_ONCE):
            chunk = waiting[i : i + PUBLISHER_STARTS_AT_ONCE]
            started = await self.publishers.start_children(
                (key, (held[0].to_node, held[0].method, held[0].jetstream)) for key, held in chunk
            )
            for key, held in chunk:
                value = started[key]
                if isinstance(value, ChildStartError):
                    failure = failure or value
                elif not _hand_over(value, held):
                    for message in held:
                        await self._route_one(key, message)
        if failure is not None:
            raise failure

    async def _route_one(self, key: str, message: Message) -> None:
        while True:
            inbox = await self.publishers.start_child(
                key, message.to_node, message.method, message.jetstream
            )
            if _hand_over(inbox, [message]):
                return
            # The Publisher stopped (idle, or crashed) between lookup and send: start a
            # fresh one and try again.
            await trio.lowlevel.checkpoint()


ROUTER_BATCH = 4096
"""Mail items the Router takes from its mailbox at once (and messages a sweep routes at once)."""
PUBLISHER_STARTS_AT_ONCE = 64
"""Publishers the Router starts together; the first ones deliver while the next start."""


def _hand_over(inbox: Any, messages: Sequence[Message]) -> bool:
    """Put ``messages`` into a Publisher's (unbounded) inbox: all of them, or none (False)
    when it has stopped (there is no checkpoint in between)."""
    try:
        for message in messages:
            inbox.send_nowait(message)
    except (trio.ClosedResourceError, trio.BrokenResourceError, AttributeError):
        return False
    return True


def publisher_id(to_node: str, method: str, jetstream: bool | None = None) -> str:
    """The child id of the Publisher for one destination: ``<toNode>.<method>``; messages
    that choose their delivery (``jetstream`` true or false) have their own Publisher,
    ``<toNode>.<method>@jetstream`` or ``<toNode>.<method>@core``."""
    if jetstream is None:
        return f"{to_node}.{method}"
    return f"{to_node}.{method}@{'jetstream' if jetstream else 'core'}"
