"""Registry: addresses processes by path, so one can message another without a reference."""

from __future__ import annotations

from typing import Any

import trio

from .errors import AlreadyRegistered, NoProcess

__all__ = ["Registry"]


class Registry:
    """Maps process paths (``"node/inbound/REQCliCommand"``) to their inbox channels.

    One registry serves one supervision tree: pass it to the root (``run_root(root,
    registry=...)`` or ``Supervisor.run(registry=...)``) and every supervisor below shares it.
    A supervised child gets an entry when it calls ``task_status.started(inbox)`` with a
    ``trio.MemorySendChannel``; the entry is removed the moment that incarnation stops, and
    the restarted incarnation registers its new inbox. Between the two, the path is
    unregistered and sends raise :class:`NoProcess`: a sender decides whether to retry.
    The supervisor also closes a stopped incarnation's inbox, so a sender blocked on it, or
    holding on to it, gets :class:`NoProcess` (``trio.ClosedResourceError`` when it uses the
    channel directly) instead of waiting forever.

    All methods are synchronous lookups in a dict, except :meth:`send`, which waits for room
    in the inbox.
    """

    def __init__(self) -> None:
        self._inboxes: dict[str, trio.MemorySendChannel[Any]] = {}

    def register(self, path: str, inbox: trio.MemorySendChannel[Any]) -> None:
        """Register ``inbox`` under ``path``.

        Raises:
            AlreadyRegistered: if another inbox is registered under ``path`` (registering
                the same inbox again is a no-op).
        """
        current = self._inboxes.get(path)
        if current is not None and current is not inbox:
            raise AlreadyRegistered(path)
        self._inboxes[path] = inbox

    def unregister(self, path: str, inbox: trio.MemorySendChannel[Any] | None = None) -> bool:
        """Remove the entry for ``path``; with ``inbox``, only if that is the one registered.

        Returns whether an entry was removed. Never raises.
        """
        current = self._inboxes.get(path)
        if current is None or (inbox is not None and current is not inbox):
            return False
        del self._inboxes[path]
        return True

    def whereis(self, path: str) -> trio.MemorySendChannel[Any] | None:
        """The inbox registered under ``path``, or ``None`` (OTP ``whereis``)."""
        return self._inboxes.get(path)

    def lookup(self, path: str) -> trio.MemorySendChannel[Any]:
        """The inbox registered under ``path``.

        Raises:
            NoProcess: if nothing is registered there.
        """
        inbox = self._inboxes.get(path)
        if inbox is None:
            raise NoProcess(path)
        return inbox

    async def send(self, path: str, message: object) -> None:
        """Send ``message`` to the process at ``path``, waiting while its inbox is full.

        On cancellation the message was not delivered.

        Raises:
            NoProcess: if nothing is registered there, or the process stopped receiving
                (its inbox was closed) before the message was delivered.
        """
        inbox = self.lookup(path)
        try:
            await inbox.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise NoProcess(path, "the process stopped receiving") from None

    def send_nowait(self, path: str, message: object) -> None:
        """Send ``message`` to the process at ``path`` without waiting.

        Raises:
            NoProcess: if nothing is registered there or its inbox is closed.
            trio.WouldBlock: if its inbox is full.
        """
        inbox = self.lookup(path)
        try:
            inbox.send_nowait(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise NoProcess(path, "the process stopped receiving") from None

    def paths(self) -> list[str]:
        """Every registered path, sorted."""
        return sorted(self._inboxes)

    def __contains__(self, path: object) -> bool:
        return path in self._inboxes

    def __len__(self) -> int:
        return len(self._inboxes)

    def __repr__(self) -> str:
        return f"<Registry of {len(self._inboxes)} processes>"
