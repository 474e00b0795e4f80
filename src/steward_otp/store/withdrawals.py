"""How a Publisher learns that an operator took a message out of the outbox before its
first send.

A Publisher sends a message for the first time without a store write (the message is
durable already; its in-flight mark is written later, see
:mod:`steward_otp.outbound.publisher`). What tells it that an operator cancelled or purged
the message meanwhile is this counter: every ``cancel`` or ``purge`` that takes a message
out of ``queued``/``in_flight`` advances :attr:`Withdrawals.generation` *before* its change
commits. A message carries the generation read before it was stored (the outbox keeps it
with the message's encoding); when the counter still shows that value right before the
first send, nothing was withdrawn since and the message is sent at once. Otherwise the
Publisher asks the store which of its messages are still active (a read) and sends only
those. So once ``Store.cancel`` or ``Store.purge`` returned, no message it removed is sent
for the first time any more; a message already sent stays as it was (its next retry finds
it inactive in the store).

The counter is advanced from the store's worker thread only and read from Trio's thread;
an int attribute is read whole under the GIL.
"""

from __future__ import annotations

from typing import Final

UNKNOWN: Final = -1
"""The generation of a message whose state this process has not seen since it was stored
(read back from the store, say): it is checked in the store before its first send."""


class Withdrawals:
    """A count of the operator actions that took messages out of the outbox's active
    states since this store object was made."""

    def __init__(self) -> None:
        self.generation = 0

    def note(self) -> None:
        """Called by such an action, inside its transaction, before it commits."""
        self.generation += 1
