"""The Subscriber: the supervised process serving one method on one node name, from its NATS
subject to its handler's runs.

It holds a queue subscription on ``<node>.<method>.<kind>`` (the group is the subject, so
instances with the same node name share the load) and works in batches: each wake-up
drains what has arrived (up to ``max_batch``), settles it
(:func:`~steward_otp.inbound.batch_intake.settle_batch`: triage, verify, store, ACK) and
starts what is new: quick handlers with their batch
(:mod:`~steward_otp.inbound.quick_batches`), every other message in its own task
(:mod:`~steward_otp.inbound.handler_runs`). On start it first runs again what was accepted
but never finished (the node stopped or this process crashed mid-handler).

An unexpected exception in a handler (a bug) ends that run only: its sender gets an error
reply, it is counted in the live info (``handler_crashes``), and the Subscriber's other runs
carry on, so none of them is cancelled and run a second time. Anything else that goes wrong
here (the subscription ends, the store fails) crashes the Subscriber, which its supervisor
restarts; the other Subscribers keep running. Completions a full disk kept from the store
outlive the restart (:mod:`~steward_otp.inbound.completions`): their messages do not run
again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from steward_otp import codec
from steward_otp.delivery import receiver
from steward_otp.disk_full import DiskFullNotice
from steward_otp.handlers.base import Handler, NodeServices
from steward_otp.inbound.batch_intake import next_batch, settle_batch
from steward_otp.inbound.completions import LOOKUP, PENDING
from steward_otp.inbound.quick_batches import QUICK_BATCHES_AT_ONCE, QuickBatchRunner
from steward_otp.inbound.verify import VerifyHook
from steward_otp.message import Message
from steward_otp.outbound.outbox import Outbox
from steward_otp.schedule import ScheduleError, message_schedule
from steward_otp.store import Store
from steward_otp.supervisors import current_child
from steward_otp.transport import InboundMessage, Transport

log = logging.getLogger(__name__)


def _has_schedule(message: Message) -> bool:
    """Whether ``message`` asks to run on a schedule (a broken schedule counts: it fails)."""
    try:
        return message_schedule(message) is not None
    except ScheduleError:
        return True


class Subscriber(QuickBatchRunner):
    """Supervised process serving one method on one node name (see the module docstring).

    Built in layers, one module each: storing completions
    (:class:`~steward_otp.inbound.completions.CompletionWriter`), running one message
    (:class:`~steward_otp.inbound.handler_runs.HandlerRunner`), running a quick batch
    (:class:`~steward_otp.inbound.quick_batches.QuickBatchRunner`); this class adds the
    subscription, the batches and the recovery.
    """

    def __init__(
        self,
        handler: Handler,
        subject: str,
        *,
        bridge: Transport,
        store: Store,
        outbox: Outbox,
        services: NodeServices,
        default_method_timeout: float,
        verify_hooks: Sequence[VerifyHook] = (),
        inbound_capacity: int | None = None,
        max_batch: int = 1024,
        on_finished: Callable[[Sequence[Message]], None] | None = None,
    ) -> None:
        self.handler = handler
        self.on_finished = on_finished
        self.subject = subject
        self.bridge = bridge
        self.store = store
        self.outbox = outbox
        self.max_batch = max_batch
        self._quick_batches = trio.Semaphore(QUICK_BATCHES_AT_ONCE)
        self.services = services
        self.default_method_timeout = default_method_timeout
        self.verify_hooks = tuple(verify_hooks)
        self.inbound_capacity = inbound_capacity
        self.received = 0
        self.duplicates = 0
        self.executed = 0
        self.disk_full = DiskFullNotice(subject, handler.name, services.report)
        self._unstored = set()

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and serve until cancelled; ready as soon as the subscription is queued.

        Raises when the bridge ends the subscription (the connection went away) or the
        store fails; the supervisor restarts this process. A crashing handler run does not.
        """
        subscription = self.bridge.subscribe(
            self.subject, queue=self.subject, capacity=self.inbound_capacity
        )
        handle = current_child()
        handler_info = self.handler.info
        handle.info_provider = lambda: {
            "subject": self.subject,
            "received": self.received,
            "duplicates": self.duplicates,
            "executed": self.executed,
            "dropped": subscription.dropped,
            "disk_full_refused": self.disk_full.refused,
            "handler_crashes": self.handler_crashes,
            "last_handler_crash": self.last_handler_crash,
            **({"handler": dict(handler_info())} if handler_info is not None else {}),
        }
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._recover, nursery)
                while True:
                    batch = await next_batch(subscription.receive, self.max_batch)
                    if not batch:
                        raise ConnectionError(
                            f"subscription {self.subject} ended: the bridge stopped"
                        )
                    self.received += len(batch)
                    await self._handle_batch(batch, nursery)
        finally:
            self.bridge.unsubscribe(subscription)

    async def _recover(self, nursery: trio.Nursery) -> None:
        """Run the messages of this method that were accepted but never finished.

        They were ACKed (so their sender will not send them again) but the node stopped or
        this process crashed before their handler completed: they run now, once, each in its
        own task (one that runs for the life of the node does not hold up the others).
        Messages whose handler already ran in this node's life, with only the completion
        unstored (a full disk), do not run again: their completion is stored instead.
        """
        pending = {msg_id for completion in self._unstored for msg_id in completion.ids}
        for completion in list(self._unstored):
            nursery.start_soon(self._store_completion, completion)
        unfinished = await self._until_stored(self.store.unfinished_inbound, 0, LOOKUP)
        for row in unfinished:
            if row.method != self.handler.name or row.msg_id in pending:
                continue
            try:
                message = codec.decode(row.payload, codec.RAW_CBOR_HEADERS)
            except codec.DecodeError as exc:
                reason = f"undecodable: {exc}"
                done = functools.partial(self.store.mark_inbound_done, row.msg_id, "error", reason)
                await self._until_stored(done, 1, PENDING)
                continue
            log.info("%s: running %s again after an interruption", self.subject, row.msg_id)
            self.executed += 1
            nursery.start_soon(self.execute, message)

    async def _handle_batch(self, batch: list[InboundMessage], nursery: trio.Nursery) -> None:
        settlement = await settle_batch(
            self.subject,
            receiver.triage(self.subject, batch),
            bridge=self.bridge,
            store=self.store,
            services=self.services,
            verify_hooks=self.verify_hooks,
            disk_full=self.disk_full,
        )
        self.duplicates += settlement.duplicates
        await self.start_runs(settlement.run, nursery)

    async def start_runs(self, messages: Sequence[Message], nursery: trio.Nursery) -> None:
        """Run accepted new ``messages`` of this method in ``nursery``; returns once started.

        Quick handlers run together as one batch (a few batches at most at a time: this
        waits for room); every other message gets its own task.
        """
        self.executed += len(messages)
        quick: list[Message] = []
        for message in messages:
            if self.handler.method.quick and not _has_schedule(message):
                quick.append(message)
            else:
                nursery.start_soon(self.execute, message)
        if quick:
            # The next batch is taken while this one runs; a few batches at most at a time.
            await self._quick_batches.acquire()
            nursery.start_soon(self._run_quick, quick)
