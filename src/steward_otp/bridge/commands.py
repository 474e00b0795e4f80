"""What the bridge's handle methods hand to its actor.

The commands travel, in order, on the bridge's one outbound Trio channel to the pump, which
carries out a whole batch of them in one crossing into asyncio. A :class:`Flush` is
answered through its ``done`` event; the others are not answered.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import trio

from steward_otp.transport import Subscription


@attrs.frozen
class Publish:
    """Publish ``payload`` on ``subject`` (with ``reply`` as reply subject, when given)."""

    subject: str
    payload: bytes
    headers: Mapping[str, str] | None
    reply: str


@attrs.frozen
class Subscribe:
    """Make ``subscription`` on the broker (unless it was closed meanwhile)."""

    subscription: Subscription


@attrs.frozen
class Unsubscribe:
    """Remove ``subscription`` from the broker."""

    subscription: Subscription


@attrs.frozen
class CloseConnection:
    """Close the broker connection for good, saying why in the log."""

    reason: str


@attrs.define(eq=False)
class Flush:
    """Wait for the broker to have everything queued before; ``ok`` tells whether it did."""

    done: trio.Event = attrs.field(factory=trio.Event)
    ok: bool = False


Command = Publish | Subscribe | Unsubscribe | CloseConnection | Flush
