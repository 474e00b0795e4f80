"""Browser sessions of the web view, kept in memory only.

A session is made by a successful login: a random id (the HttpOnly cookie) and a random
CSRF token (sent back by the pages' scripts in a header on every state-changing request).
Sessions end on logout, after ``idle`` seconds without a request, after ``lifetime``
seconds in any case, and when the node restarts. At most ``limit`` live at once: the least
recently used is dropped to make room.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import attrs

DEFAULT_IDLE: Final = 8 * 3600.0
DEFAULT_LIFETIME: Final = 24 * 3600.0
DEFAULT_LIMIT: Final = 1000


@attrs.define
class Session:
    """One logged-in browser."""

    id: str
    csrf: str
    created: float
    used: float

    def csrf_matches(self, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (constant-time compare)."""
        return bool(presented) and hmac.compare_digest(
            self.csrf.encode(), str(presented).encode("utf-8", errors="surrogateescape")
        )


class Sessions:
    """The live sessions, by id. Not thread-safe: used from the node's event loop."""

    def __init__(
        self,
        *,
        idle: float = DEFAULT_IDLE,
        lifetime: float = DEFAULT_LIFETIME,
        limit: int = DEFAULT_LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.limit = limit
        self.clock = clock
        self._live: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    def create(self) -> Session:
        """A new session with fresh random id and CSRF token."""
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self._live[session.id] = session
        while len(self._live) > self.limit:
            self._live.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle time restarts), or None."""
        if not session_id:
            return None
        session = self._live.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.used > self.idle or now - session.created > self.lifetime:
            del self._live[session_id]
            return None
        session.used = now
        self._live.move_to_end(session_id)
        return session

    def drop(self, session_id: str | None) -> None:
        """End the session (nothing happens for an unknown id)."""
        if session_id:
            self._live.pop(session_id, None)


__all__ = ["Session", "Sessions"]
