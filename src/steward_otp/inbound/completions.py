"""Storing what a finished handler leaves behind -- its outcome and replies -- through a full disk.

A :class:`Completion` is the one store write that marks messages done once their handler
has run (for a quick batch, with the replies it made). Until it commits the messages are
unfinished in the store, and a node that stops before then runs them again at its next
start, as after a crash mid-handler.

Guarantees:

* a write begun is never cut short: each attempt is shielded from cancellation, so it
  commits or fails;
* a write the store refuses for a full disk (:class:`~steward_otp.store.StoreFull`) is made
  again, :data:`FULL_RETRY_MIN` doubling to :data:`FULL_RETRY_MAX` seconds apart, until it
  commits; the handler does not run again meanwhile, not even when the Subscriber restarts
  (the completions not yet stored are kept on the Subscriber and written by its next run);
* the error kernel hears of it sparingly, through the Subscriber's
  :class:`~steward_otp.disk_full.DiskFullNotice`;
* whoever waits for replies (the node's reply hub) is told of the messages only once their
  completion has committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import attrs
import trio

from steward_otp.disk_full import DiskFullNotice
from steward_otp.message import Message
from steward_otp.store import StoreFull

T = TypeVar("T")

FULL_RETRY_MIN = 0.5
FULL_RETRY_MAX = 10.0
"""Seconds between two attempts to store a finished handler's completion on a full disk
(doubling from the first to the second)."""

PENDING = "finished, waiting for their outcome and replies to be stored (not run again)"
LOOKUP = "unfinished messages from before an interruption wait to be looked up"


@attrs.frozen(eq=False)
class Completion:
    """Finished handlers whose outcome (and replies) are still to be stored."""

    ids: frozenset[str]
    write: Callable[[], Awaitable[None]]
    """The store write; safe to repeat (a message already done is left as it is)."""
    messages: tuple[Message, ...]


class CompletionWriter:
    """The part of a :class:`~steward_otp.inbound.subscriber.Subscriber` that stores its
    completions; the Subscriber sets these attributes when it is made."""

    disk_full: DiskFullNotice
    """Says when the Subscriber's writes meet a full disk."""
    on_finished: Callable[[Sequence[Message]], None] | None
    """Told of messages whose handler finished (committed): the node's reply hub."""
    _unstored: set[Completion]
    """Completions not yet stored; they outlive a restart of the Subscriber's ``run``."""

    async def _store_completion(self, completion: Completion) -> None:
        """Store ``completion``, then tell :attr:`on_finished`.

        Each attempt runs even while this process is being cancelled. On a full disk it is
        kept on the Subscriber and written again until it commits: cancelled meanwhile, the
        Subscriber's next run writes it (and does not run its messages again).
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
