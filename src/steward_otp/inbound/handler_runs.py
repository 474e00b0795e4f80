"""Running one accepted message: its handler under ``methodTimeout``, on its schedule if it has
one, its failures turned into error replies.

Guarantees:

* a handler is cancelled at its message's deadline (:func:`method_deadline`: after
  ``methodTimeout`` seconds, the node's default when that is below 1, never for ``-1``); a
  timeout is an error reply and the outcome ``timeout``;
* a :class:`~steward_otp.handlers.base.HandlerError` (alone, or alone in exception groups
  from the handler's own tasks) is an error reply (``<fileName>.error``) and a line to the
  central error log -- so is output too large for one reply
  (:class:`~steward_otp.handlers.base.ReplyTooLarge`); any other exception -- a bug -- is
  the same, with the outcome ``crash``, and is contained to its run, like a crashing
  temporary worker in OTP: it is logged with its traceback and counted
  (``handler_crashes``, ``last_handler_crash`` in the Subscriber's live info), and the
  Subscriber and its other runs carry on (restarting it would cancel them, and they would
  run a second time);
* a failure of ``REQErrorLog`` itself is logged locally only, never sent to the error log;
* a scheduled message runs at each offset of its schedule, runs may overlap, and it is
  marked done once the last run has ended;
* the outcome is stored as :mod:`steward_otp.inbound.completions` says: a full disk delays
  it and never makes the handler run again in this node's life.
"""

from __future__ import annotations

import logging
import math

import trio

from steward_otp.error_kernel import ERROR_LOG_METHOD
from steward_otp.handlers.base import (
    Handler,
    HandlerContext,
    HandlerError,
    NodeServices,
    sized_reply,
)
from steward_otp.inbound.completions import PENDING, Completion, CompletionWriter
from steward_otp.message import METHOD_TIMEOUT_FOREVER, Message, wire_errors
from steward_otp.methods import UnknownMethodError
from steward_otp.schedule import Schedule, ScheduleError, message_schedule, schedule_outcome
from steward_otp.store import Store, StoreError, StoreFull

log = logging.getLogger(__name__)


def method_deadline(message: Message, default_timeout: float) -> float:
    """The trio time at which a handler for ``message`` is cancelled."""
    timeout = message.method_timeout
    if timeout == METHOD_TIMEOUT_FOREVER:
        return math.inf
    return trio.current_time() + (timeout if timeout >= 1 else default_timeout)


class HandlerCrashed(Exception):
    """A handler raised something other than HandlerError (its ``__cause__``); the run ends
    with the outcome ``crash`` and :meth:`HandlerRunner._note_crash` counts it."""


class HandlerRunner(CompletionWriter):
    """The part of a :class:`~steward_otp.inbound.subscriber.Subscriber` that runs one message
    of its method; the Subscriber sets these attributes when it is made."""

    handler: Handler
    services: NodeServices
    store: Store
    default_method_timeout: float
    subject: str
    handler_crashes: int = 0
    """Runs that ended in a crash (a bug in the handler), in this node's life."""
    last_handler_crash: str | None = None
    """The last crash's reason."""

    def _note_crash(self, crash: HandlerCrashed) -> None:
        """Count and log a crashed run; the error reply and the error-log line are sent."""
        self.handler_crashes += 1
        self.last_handler_crash = str(crash)
        log.error("%s: %s", self.subject, crash, exc_info=crash.__cause__)

    async def execute(self, message: Message) -> None:
        """Run the handler for ``message`` (already accepted), send its replies, mark it done.

        A scheduled message (``schedule: [interval, total]``, or the deprecated
        ``REQHttpGetScheduled``) runs once now, then every ``interval`` seconds until
        ``total`` seconds have passed; runs may overlap, each has its own ``methodTimeout``
        and its own replies, and the message is marked done when the last run has ended.
        Cancellation (the node or this subscriber stops) leaves the message unfinished, so
        it runs again, schedule and all, when the subscriber starts again. Once the handler
        has finished, its completion is stored as :meth:`_store_completion` says: a full
        disk delays it and never makes the handler run again in this node's life. Whatever
        fails in the run, other than the store, ends that run as a crash (counted, stored
        as done), so that no message can make its subscriber fail at every start.
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
            self._note_crash(exc)
        except StoreError:
            raise  # the store's trouble: the subscriber restarts and the message runs again
        except Exception as exc:  # a bug on the way to or from the handler: this run ends
            outcome, reason = "crash", repr(exc)
            crash = HandlerCrashed(f"run of {message.method} failed: {exc!r}")
            crash.__cause__ = exc
            self._note_crash(crash)
        finally:
            if outcome is not None:
                await self._store_completion(self._done(message, outcome, reason))

    def _done(self, message: Message, outcome: str, reason: str | None) -> Completion:
        """The completion of one message run in its own task (its replies are stored)."""

        async def write() -> None:
            await self.store.mark_inbound_done(message.id, outcome, reason)

        return Completion(frozenset([message.id]), write, (message,))

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
            try:
                if output is not None and replies is not None:
                    await ctx.reply(output)  # gathered: stored with the completion
                elif output is not None:
                    await self._until_stored(lambda: ctx.reply(output), 1, PENDING)
            except UnknownMethodError as exc:  # a replyMethod this node cannot route
                self.services.report("error", f"error: {message.method}: reply not sent: {exc}")
                return "error", f"reply not sent: {exc}"
            return "ok", None
        except HandlerError as exc:
            await self._fail(ctx, message, f"error: {message.method}: {exc}")
            return "error", str(exc)
        except StoreFull as exc:
            await self._fail(ctx, message, f"error: {message.method}: a reply was not sent: {exc}")
            return "error", f"a reply was not sent: {exc}"
        except Exception as exc:
            expected = _sole_handler_error(exc)
            if expected is not None:  # e.g. raised in a task of the handler's own nursery
                await self._fail(ctx, message, f"error: {message.method}: {expected}")
                return "error", str(expected)
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
        reply = sized_reply(message, text.encode("utf-8", "backslashreplace") + b"\n", error=True)
        if reply is None:
            return
        if wire_errors(reply):  # unsendable: the request alone fills a message, or a bad name
            log.error("%s: error reply not sent: %s", message.method, wire_errors(reply)[0])
            return
        try:
            await self._until_stored(lambda: self.services.submit([reply]), 1, PENDING)
        except UnknownMethodError as exc:  # a replyMethod this node cannot route
            log.error("%s: error reply not sent: %s", message.method, exc)


def _sole_handler_error(exc: BaseException) -> HandlerError | None:
    """The HandlerError ``exc`` is, or is alone in (exception groups of one, nested)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, HandlerError) else None
