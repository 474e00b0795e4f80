"""Quick handlers (file writes, console, liveness) run with the batch they arrived in, and
their completions and replies are stored in one store operation.

Guarantees:

* a Subscriber runs at most :data:`QUICK_BATCHES_AT_ONCE` quick batches at a time (the next
  batch is taken while one runs);
* until the one operation commits, the batch's messages are unfinished in the store: a
  crash before it runs them again at the next start, and quick handlers write idempotently
  (appends go through :mod:`steward_otp.append_journal`), so a rerun neither loses nor
  repeats a line;
* a handler with a batch function is called once for the batch, under the earliest
  ``methodTimeout`` in it, and gives the outcomes and replies running each message alone
  would give; when the batch function crashes, each message runs again alone, so only a
  message that crashes by itself fails;
* on a full disk the operation is repeated until it commits and the handlers do not run
  again (see :mod:`steward_otp.inbound.completions`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from steward_otp.handlers.base import BatchResult, HandlerContext, HandlerError
from steward_otp.inbound.completions import Completion
from steward_otp.inbound.handler_runs import HandlerCrashed, HandlerRunner, method_deadline
from steward_otp.message import Message
from steward_otp.outbound.outbox import Outbox
from steward_otp.store.inbox_operations import InboundOutcome

log = logging.getLogger(__name__)

QUICK_BATCHES_AT_ONCE = 4
"""Batches of quick handlers one Subscriber runs at the same time."""


class QuickBatchRunner(HandlerRunner):
    """The part of a :class:`~steward_otp.inbound.subscriber.Subscriber` that runs quick
    handlers with their batch; the Subscriber sets these attributes when it is made."""

    outbox: Outbox
    _quick_batches: trio.Semaphore

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
        for crash in crashes:
            self._note_crash(crash)

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
                # that crashes fails, and its crash is counted.
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
                try:
                    await context(message).reply(result)
                except HandlerError as exc:  # ReplyTooLarge: output too large for a reply
                    await self._fail(context(message), message, f"error: {message.method}: {exc}")
                    outcomes.append((message.id, "error", str(exc)))
                    continue
            outcomes.append((message.id, "ok", None))

    def _finished(
        self,
        messages: Sequence[Message],
        outcomes: Sequence[InboundOutcome],
        replies: Sequence[Message],
    ) -> Completion:
        """The completion of a quick batch: outcomes and replies, prepared once."""
        try:
            prepared = self.outbox.prepare_all(replies)  # one batch, one signature
        except ValueError:  # UnknownMethodError is a ValueError: send the others
            prepared = []
            for reply in replies:
                try:
                    prepared.append(self.outbox.prepare(reply))
                except ValueError as exc:
                    self.services.report("error", f"error: {reply.method}: reply not sent: {exc}")
        entries = self.outbox.entries_for(prepared)
        done = tuple(outcomes)

        async def write() -> None:
            self.outbox.route(prepared, await self.store.finish_inbound(done, entries))

        return Completion(frozenset(o[0] for o in done), write, tuple(messages))
