"""Durable file output with group commit: many writers to one file, one fsync.

Output handlers append results line by line; an fsync per line would cap a node at a few
hundred results per second. :class:`FileWriter` queues writes per path: the first writer
to a path becomes the leader, takes every write queued for that path, applies them in order
in one worker-thread crossing, fsyncs once, and wakes every writer. Each ``write`` still
returns only after its data is on disk.

When the target path already exists as a Unix socket, the data is sent to that socket
instead (Steward's way of feeding another program).
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

import attrs
import trio

FILE_MODE = 0o660
FOLDER_MODE = 0o770
SOCKET_TIMEOUT = 10.0
"""Seconds a write to a Unix-socket output may take before it fails."""


@attrs.define(eq=False)
class _Write:
    data: bytes
    append: bool
    done: trio.Event = attrs.field(factory=trio.Event)
    error: OSError | None = None


def _apply_each(batches: list[tuple[Path, list[_Write]]]) -> None:
    """:func:`_apply` of each ``(path, writes)`` in turn. Runs in a worker thread."""
    for path, writes in batches:
        _apply(path, writes)


def _apply(path: Path, writes: list[_Write]) -> None:
    """Apply ``writes`` to ``path`` in order; one fsync at the end. Runs in a worker thread."""
    try:
        if stat.S_ISSOCK(path.stat().st_mode):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                # A reader that never reads must not hold this thread (and the node) forever.
                sock.settimeout(SOCKET_TIMEOUT)
                sock.connect(str(path))
                sock.sendall(b"".join(w.data for w in writes))
            return
    except FileNotFoundError:
        pass
    except OSError as exc:
        for w in writes:
            w.error = exc
        return
    except ValueError as exc:  # a NUL byte in the path
        for w in writes:
            w.error = OSError(f"cannot use path {str(path)!r}: {exc}")
        return
    try:
        path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    except OSError as exc:
        for w in writes:
            w.error = exc
        return
    try:
        for w in writes:
            if not w.append:
                os.ftruncate(fd, 0)
            view = memoryview(w.data)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        for w in writes:
            w.error = exc
    finally:
        os.close(fd)


class FileWriter:
    """Group-committing file writer shared by one node's output handlers."""

    def __init__(self) -> None:
        self._queued: dict[Path, list[_Write]] = {}
        self.batches = 0
        self.writes = 0

    async def write(self, path: Path, data: bytes, *, append: bool) -> None:
        """Append ``data`` to ``path`` (or replace its content), creating folders.

        Returns once the data is on disk (fsync). Writes to one path are applied in call
        order. Raises OSError when the write failed. Cancellation after the write was queued
        does not withdraw it.
        """
        item = _Write(data, append)
        queue = self._queued.get(path)
        if queue is not None:
            queue.append(item)
        else:
            self._queued[path] = [item]
            # Shielded: the writes of other callers ride on this leader.
            with trio.CancelScope(shield=True):
                await self._lead(path)
        await item.done.wait()
        if item.error is not None:
            raise item.error

    async def write_many(
        self, writes: Mapping[Path, bytes], *, append: bool, crossings: int = 16
    ) -> dict[Path, OSError | None]:
        """:meth:`write` of each ``(path, data)``, concurrently, in at most ``crossings``
        worker-thread crossings (each applies its share of the files one after another, an
        fsync per file) instead of one per file. Returns per path None (on disk) or the
        error its write failed with. Writes queued on a path before this call are applied
        first; ones queued meanwhile after it, as :meth:`write` does.
        """
        items = {path: _Write(data, append) for path, data in writes.items()}
        led: list[Path] = []
        for path, item in items.items():
            queue = self._queued.get(path)
            if queue is not None:
                queue.append(item)
            else:
                self._queued[path] = [item]
                led.append(path)
        if led:
            # Shielded, as in write: the writes of other callers ride on these.
            with trio.CancelScope(shield=True):
                await self._lead_many(led, crossings)
        for item in items.values():
            await item.done.wait()
        return {path: item.error for path, item in items.items()}

    async def _lead_many(self, paths: list[Path], crossings: int) -> None:
        share = -(-len(paths) // max(1, crossings))

        async def apply_share(part: list[Path]) -> None:
            batches: list[tuple[Path, list[_Write]]] = []
            for path in part:
                batches.append((path, self._queued[path]))
                self._queued[path] = []
                self.batches += 1
                self.writes += len(batches[-1][1])
            try:
                await trio.to_thread.run_sync(_apply_each, batches)
            except BaseException as exc:
                for path, batch in batches:
                    for item in batch:
                        if item.error is None:
                            item.error = OSError(f"write to {path} failed: {exc!r}")
                raise
            finally:
                for _, batch in batches:
                    for item in batch:
                        item.done.set()

        try:
            async with trio.open_nursery() as nursery:
                for start in range(0, len(paths), share):
                    nursery.start_soon(apply_share, paths[start : start + share])
        finally:
            for path in paths:  # writes queued meanwhile, then the path is free again
                await self._lead(path)

    async def _lead(self, path: Path) -> None:
        try:
            while batch := self._queued.get(path):
                self._queued[path] = []
                self.batches += 1
                self.writes += len(batch)
                try:
                    await trio.to_thread.run_sync(_apply, path, batch)
                except BaseException as exc:
                    for item in batch:
                        if item.error is None:
                            item.error = OSError(f"write to {path} failed: {exc!r}")
                    raise
                finally:
                    for item in batch:
                        item.done.set()
        finally:
            self._queued.pop(path, None)
