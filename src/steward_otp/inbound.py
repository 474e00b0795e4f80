"""Inbound: one Subscriber per method, from the NATS subject to the handler and its reply.

A Subscriber holds a queue subscription on ``<node>.<method>.<kind>`` (the group is the
subject, so instances with the same node name share the load) and works in batches: each
wake-up drains what has arrived (up to ``max_batch``) and

1. triages it (:func:`steward_otp.delivery.receiver.triage`): garbage and messages without
   id or ``fromNode`` are reported and not ACKed; an unsupported protocol version is
   rejected by id;
2. runs the verify hooks (signatures and ACLs plug in here); a refusal is reported and, to
   a protocol-2 sender, rejected by id;
3. de-duplicates and persists the whole batch in ONE store operation: the store remembers
   the ids *before* anything is ACKed;
4. ACKs: one ACK per sender (reply subject) listing every id of the batch it asked an ACK
   for -- also duplicates, whose first ACK was evidently lost;
5. runs what is new, once: quick handlers (file writes, console, liveness) with the batch,
   their completions and replies stored in one operation; every other handler in its own
   task under ``methodTimeout`` (``-1`` = no limit), with Steward's replies submitted to the
   outbox; a message with a ``schedule`` runs again every interval until its time is up.

Handler errors go back as error replies (``<fileName>.error``) and to the central error log.
An unexpected exception in a handler crashes the Subscriber, which its supervisor restarts;
the other Subscribers keep running.

A full disk (:class:`~steward_otp.store.StoreFull`) crashes nothing:

* a batch whose persisting is refused is not ACKed and nothing of it runs; its senders keep
  the messages and send them again (within their ``retries``), and once the store accepts
  writes again they are stored, ACKed and run once (nothing of them was stored before, so
  none is taken for a duplicate);
* a handler that already ran keeps its outcome and replies in memory and its completion is
  written again, every :data:`FULL_RETRY_MIN` .. :data:`FULL_RETRY_MAX` seconds, until it
  commits: the message stays unfinished in the store meanwhile and the handler does not run
  again -- not even when the Subscriber restarts (the completion is kept on the Subscriber
  and written by the next run). Only a node that stops before the write commits runs the
  message again at its next start, exactly as after a crash mid-handler;
* the error kernel hears of it sparingly (:class:`DiskFullNotice`): a line when it starts,
  at most one per :data:`DISK_FULL_REPORT_INTERVAL` while it lasts, one when it is over.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio

from steward_otp import codec
from steward_otp.delivery import receiver
from steward_otp.disk_full import DiskFullNotice
from steward_otp.error_kernel import ERROR_LOG_METHOD
from steward_otp.handlers.base import (
    BatchResult,
    Handler,
    HandlerContext,
    HandlerError,
    Level,
    NodeServices,
)
from steward_otp.jetstream import TERMINATE
from steward_otp.message import METHOD_TIMEOUT_FOREVER, Message, build_reply
from steward_otp.outbound.outbox import Outbox
from steward_otp.schedule import Schedule, ScheduleError, message_schedule, schedule_outcome
from steward_otp.store import Store, StoreFull
from steward_otp.store.inbox_operations import InboundOutcome
from steward_otp.supervisors import current_child
from steward_otp.transport import BridgeBusy, InboundMessage, Transport

log = logging.getLogger(__name__)


VerifyHook = Callable[[Message], Awaitable[str | None]]
"""Returns None to allow the message, or the reason it is refused."""

T = TypeVar("T")

FULL_RETRY_MIN = 0.5
FULL_RETRY_MAX = 10.0
"""Seconds between two attempts to store a finished handler's completion on a full disk
(doubling from the first to the second)."""

REFUSED = "refused and not acknowledged (their senders send them again)"
PENDING = "finished, waiting for their outcome and replies to be stored (not run again)"
LOOKUP = "unfinished messages from before an interruption wait to be looked up"


def method_deadline(message: Message, default_timeout: float) -> float:
    """The trio time at which a handler for ``message`` is cancelled."""
    timeout = message.method_timeout
    if timeout == METHOD_TIMEOUT_FOREVER:
        return math.inf
    if timeout < 1:
        timeout = int(default_timeout)
    return trio.current_time() + timeout


def _has_schedule(message: Message) -> bool:
    """Whether ``message`` asks to run on a schedule (a broken schedule counts: it fails)."""
    try:
        return message_schedule(message) is not None
    except ScheduleError:
        return True


def _level(name: str) -> Level:
    return "warning" if name == "warning" else "info" if name == "info" else "error"


QUICK_BATCHES_AT_ONCE = 4
"""Batches of quick handlers one Subscriber runs at the same time."""


async def next_batch(
    receive: trio.MemoryReceiveChannel[InboundMessage], max_batch: int
) -> list[InboundMessage]:
    """Wait for a message, then take whatever else has arrived, up to ``max_batch``.

    Empty when the channel ended (the transport dropped the subscription).
    """
    try:
        batch = [await receive.receive()]
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return []
    while len(batch) < max_batch:
        try:
            batch.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            break
    return batch


async def settle_batch(
    subject: str,
    triaged: receiver.Triage,
    *,
    bridge: Transport,
    store: Store,
    services: NodeServices,
    verify_hooks: Sequence[VerifyHook] = (),
    disk_full: DiskFullNotice | None = None,
) -> receiver.Settlement:
    """Report, verify, persist and acknowledge one triaged batch; returns what to run.

    The ids are durable (one store operation) before any ACK goes out; refused messages are
    rejected by id; deliveries that can never run are terminated at the broker.

    When the store refuses the batch for a full disk, none of its messages is ACKed and none
    runs (their senders send them again); rejections and terminations still go out. It is
    told to ``disk_full`` (rate-limited there), or else reported once for this batch.
    """
    for problem in triaged.problems:
        services.report(_level(problem.level), problem.text)
    for reply in triaged.terminate:
        with contextlib.suppress(BridgeBusy):
            bridge.publish_nowait(reply, TERMINATE)
    candidates = list(triaged.candidates)
    rejections = list(triaged.rejections)
    if verify_hooks:
        candidates = await _verify(subject, candidates, rejections, verify_hooks, services)
    new_ids: list[str] = []
    if candidates:
        try:
            new_ids = await store.accept_inbound_many(receiver.stored_rows(candidates))
        except StoreFull as exc:
            if disk_full is None:
                text = f"error: {subject}: {REFUSED} ({len(candidates)} message(s)): {exc}"
                services.report("error", text)
            else:
                disk_full.refused_messages(len(candidates), REFUSED, exc)
            candidates = []
        else:
            if disk_full is not None:
                disk_full.cleared()
    settlement = receiver.settle(candidates, new_ids, rejections)
    for ack in settlement.acks:
        # Outbound queue full: no ACK this time; the sender retries, dedupe stops a rerun.
        with contextlib.suppress(BridgeBusy):
            bridge.publish_nowait(ack.subject, ack.payload)
    return settlement


async def _verify(
    subject: str,
    candidates: list[receiver.Candidate],
    rejections: list[receiver.Rejection],
    verify_hooks: Sequence[VerifyHook],
    services: NodeServices,
) -> list[receiver.Candidate]:
    allowed: list[receiver.Candidate] = []
    for candidate in candidates:
        refusal: str | None = None
        for hook in verify_hooks:
            refusal = await hook(candidate.message)
            if refusal is not None:
                break
        if refusal is None:
            allowed.append(candidate)
            continue
        services.report("warning", f"error: {subject}: {refusal}")
        rejection = receiver.refuse(candidate, refusal)
        if rejection is not None:
            rejections.append(rejection)
    return allowed


class HandlerCrashed(Exception):
    """A handler raised something other than HandlerError; the Subscriber crashes with it."""


@attrs.frozen(eq=False)
class _Completion:
    """Finished handlers whose outcome (and replies) are still to be stored."""

    ids: frozenset[str]
    write: Callable[[], Awaitable[None]]
    """The store write; safe to repeat (a message already done is left as it is)."""
    messages: tuple[Message, ...]


class Subscriber:
    """Supervised process serving one method on one node name."""

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
        """Told of messages whose handler finished (committed): the node's reply hub."""
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
        """Says when this Subscriber's writes meet a full disk (see the module docstring)."""
        self._unstored: set[_Completion] = set()
        """Completions not yet stored; they outlive a restart of :meth:`run`."""

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and serve until cancelled; ready as soon as the subscription is queued.

        Raises when the bridge ends the subscription (the connection went away) or when a
        handler crashes; the supervisor restarts this process.
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

    async def _run_quick(self, messages: list[Message]) -> None:
        """Run quick handlers together; store their completions and replies in one operation.

        Until that operation commits the messages are unfinished in the store: a crash
        before it runs them again at the next start. Quick handlers write idempotently, and
        appends go through :mod:`steward_otp.append_journal`, so a rerun neither loses nor
        repeats a line. On a full disk the operation is repeated until it commits, the
        handlers are not run again (see :meth:`_store_completion`).
        """
        outcomes: list[tuple[str, str, str | None]] = []
        replies: list[Message] = []
        crashes: list[HandlerCrashed] = []

        async def run_one(message: Message) -> None:
            try:
                outcome, reason = await self._run_once(message, replies)
            except HandlerCrashed as exc:
                crashes.append(exc)
                outcome, reason = "crash", repr(exc.__cause__)
            outcomes.append((message.id, outcome, reason))

        try:
            if self.handler.batch is not None:
                await self._run_batch(messages, outcomes, replies, crashes)
            else:
                async with trio.open_nursery() as nursery:
                    for message in messages:
                        nursery.start_soon(run_one, message)
            await self._store_completion(self._finished(messages, outcomes, replies))
        finally:
            self._quick_batches.release()
        if crashes:
            raise crashes[0]

    async def _run_batch(
        self,
        messages: list[Message],
        outcomes: list[tuple[str, str, str | None]],
        replies: list[Message],
        crashes: list[HandlerCrashed],
    ) -> None:
        """One call of the handler's batch function for ``messages``: outcomes, replies and
        failures exactly as running each alone would give (see ``handler(batch=...)``).

        It runs under the earliest ``methodTimeout`` of the batch; a timeout fails every
        message of the batch. When the batch function crashes, each message runs again alone
        (the single-message handler), so only a message that crashes by itself fails.
        """
        batch = self.handler.batch
        assert batch is not None
        deadline = min(method_deadline(m, self.default_method_timeout) for m in messages)
        results: list[BatchResult] | None = None
        try:
            with trio.CancelScope(deadline=deadline):
                results = await batch(self.services, messages)
                if len(results) != len(messages):
                    raise RuntimeError(f"{len(results)} results for {len(messages)} messages")
        except Exception as exc:
            if len(messages) > 1:
                # One message must not fail the others: run each alone (the single-message
                # path; appends are journalled, replacements idempotent), so only the one
                # that crashes fails, and the Subscriber still restarts with its crash.
                log.warning(
                    "%s: a batch of %d crashed (%r); running its messages one by one",
                    self.subject,
                    len(messages),
                    exc,
                )
                for message in messages:
                    try:
                        outcome, reason = await self._run_once(message, replies)
                    except HandlerCrashed as failed:
                        crashes.append(failed)
                        outcome, reason = "crash", repr(failed.__cause__)
                    outcomes.append((message.id, outcome, reason))
                return
            for message in messages:
                ctx = HandlerContext(services=self.services, message=message, deadline=deadline)
                await self._fail(ctx, message, f"error: {message.method}: handler crashed: {exc!r}")
                outcomes.append((message.id, "crash", repr(exc)))
            crash = HandlerCrashed(f"handler for {self.handler.name} crashed: {exc!r}")
            crash.__cause__ = exc
            crashes.append(crash)
            return

        def context(message: Message) -> HandlerContext:
            return HandlerContext(
                services=self.services, message=message, deadline=deadline, replies=replies
            )

        if results is None:  # the deadline passed
            for message in messages:
                text = (
                    f"error: {message.method}: method timed out: [{' '.join(message.method_args)}]"
                )
                await self._fail(context(message), message, text)
                outcomes.append((message.id, "timeout", "timeout"))
            return
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, HandlerError):
                await self._fail(context(message), message, f"error: {message.method}: {result}")
                outcomes.append((message.id, "error", str(result)))
                continue
            if result is not None:
                await context(message).reply(result)
            outcomes.append((message.id, "ok", None))

    def _finished(
        self,
        messages: Sequence[Message],
        outcomes: Sequence[InboundOutcome],
        replies: Sequence[Message],
    ) -> _Completion:
        """The completion of a quick batch: outcomes and replies, prepared once."""
        prepared: list[Message] = []
        for reply in replies:
            try:
                prepared.append(self.outbox.prepare(reply))
            except ValueError as exc:  # UnknownMethodError is a ValueError
                self.services.report("error", f"error: {reply.method}: reply not sent: {exc}")
        entries = self.outbox.entries_for(prepared)
        done = tuple(outcomes)

        async def write() -> None:
            self.outbox.route(prepared, await self.store.finish_inbound(done, entries))

        return _Completion(frozenset(o[0] for o in done), write, tuple(messages))

    async def _store_completion(self, completion: _Completion) -> None:
        """Store ``completion``, then tell :attr:`on_finished`.

        Each attempt runs even while this process is being cancelled. On a full disk it is
        kept on the Subscriber and written again until it commits: cancelled meanwhile, the
        next :meth:`run` writes it (and does not run its messages again).
        """
        self._unstored.add(completion)
        await self._until_stored(completion.write, len(completion.ids), PENDING)
        self._unstored.discard(completion)
        if self.on_finished is not None:
            self.on_finished(completion.messages)

    async def _until_stored(self, write: Callable[[], Awaitable[T]], count: int, what: str) -> T:
        """Run the store operation ``write`` (for ``count`` messages) until it commits.

        Each attempt is shielded from cancellation: once begun it commits or fails. A full
        disk is told to :attr:`disk_full` (the messages ``what``) and waited out, cancellably,
        :data:`FULL_RETRY_MIN` to :data:`FULL_RETRY_MAX` seconds between attempts. Any other
        store error propagates.
        """
        delay = FULL_RETRY_MIN
        while True:
            try:
                with trio.CancelScope(shield=True):
                    result = await write()
            except StoreFull as exc:
                self.disk_full.refused_messages(count, what, exc)
            else:
                self.disk_full.cleared()
                return result
            await trio.sleep(delay)
            delay = min(2 * delay, FULL_RETRY_MAX)

    async def execute(self, message: Message) -> None:
        """Run the handler for ``message`` (already accepted), send its replies, mark it done.

        A scheduled message (``schedule: [interval, total]``, or the deprecated
        ``REQHttpGetScheduled``) runs once now, then every ``interval`` seconds until
        ``total`` seconds have passed; runs may overlap, each has its own ``methodTimeout``
        and its own replies, and the message is marked done when the last run has ended.
        Cancellation (the node or this subscriber stops) leaves the message unfinished, so
        it runs again, schedule and all, when the subscriber starts again. Once the handler
        has finished, its completion is stored as :meth:`_store_completion` says: a full
        disk delays it and never makes the handler run again in this node's life.
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
                await self._store_completion(self._done(message, outcome, reason))

    def _done(self, message: Message, outcome: str, reason: str | None) -> _Completion:
        """The completion of one message run in its own task (its replies are stored)."""

        async def write() -> None:
            await self.store.mark_inbound_done(message.id, outcome, reason)

        return _Completion(frozenset([message.id]), write, (message,))

    async def _run_once(
        self, message: Message, replies: list[Message] | None = None
    ) -> tuple[str, str | None]:
        """One run of the handler under ``methodTimeout``: (outcome, reason) for the store.

        With ``replies`` given, the handler's replies are gathered there (not submitted).
        Its last reply waits out a full disk; a reply the handler sent itself that met one
        ends the run as an error (the handler ran, but not to its end).
        """
        deadline = method_deadline(message, self.default_method_timeout)
        ctx = HandlerContext(
            services=self.services, message=message, deadline=deadline, replies=replies
        )
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
                await self._until_stored(lambda: ctx.reply(output), 1, PENDING)
            return "ok", None
        except HandlerError as exc:
            await self._fail(ctx, message, f"error: {message.method}: {exc}")
            return "error", str(exc)
        except StoreFull as exc:
            await self._fail(ctx, message, f"error: {message.method}: a reply was not sent: {exc}")
            return "error", f"a reply was not sent: {exc}"
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
            await self._until_stored(lambda: self.services.submit([reply]), 1, PENDING)
