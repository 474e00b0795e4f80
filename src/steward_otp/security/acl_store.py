"""ACL files under ``<home>/etc/acl/``: central's editable ACL and the ACL a node received.

* ``central.json`` (on the key authority): rules, node groups, command groups and their
  version -- groups persisted too (Steward kept them in memory only).
* ``node.json`` (on every node that received one): the node's own ACL, its hash and the
  version it was generated from.

Every write replaces the file atomically (written beside it, flushed, renamed; mode 0600),
under a lock file so that two writers never lose each other's change. Reads and writes are
blocking: async code calls them from a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from steward_otp.atomic_file import write_atomically
from steward_otp.security.acl import AclError, NodeAcl
from steward_otp.security.central_acl import CentralAcl

__all__ = ["CENTRAL_FILE", "NODE_FILE", "CentralAclStore", "NodeAclStore", "acl_dir"]

CENTRAL_FILE: Final = "central.json"
NODE_FILE: Final = "node.json"
REFRESH_INTERVAL: Final = 1.0
"""Seconds between checks of central.json for changes made by others (the acl command)."""


def acl_dir(etc_dir: Path) -> Path:
    """``<home>/etc/acl``."""
    return etc_dir / "acl"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _write_atomically(path: Path, text: str) -> None:
    try:
        write_atomically(path, text)
    except OSError as exc:
        raise AclError(f"cannot write {path}: {exc.strerror or exc}") from None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AclError(f"cannot read {path}: {exc}") from None


class CentralAclStore:
    """Central's editable ACL, backed by ``<etc>/acl/central.json``.

    A running node picks up changes others made to the file (the ``acl`` command) with
    :meth:`refresh`, checked at most once a second.
    """

    def __init__(
        self,
        folder: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.path = folder / CENTRAL_FILE
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._next_refresh = -float("inf")
        self._seen = self._stamp()
        self.state = self._read()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _read(self) -> CentralAcl:
        text = _read_text(self.path)
        return CentralAcl() if text is None else CentralAcl.from_json(text, source=str(self.path))

    def refresh(self) -> bool:
        """Re-read the file when it changed since it was last read; True when the state
        changed. A file that cannot be used keeps the last good state and raises AclError."""
        now = self._clock()
        if now < self._next_refresh:
            return False
        self._next_refresh = now + self._refresh_interval
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        state = self._read()
        self._seen = stamp
        changed = state != self.state
        self.state = state
        return changed

    def update(self, change: Callable[[CentralAcl], CentralAcl]) -> CentralAcl:
        """Apply ``change`` to the file's content under the lock and write the result.

        Raises :class:`AclError` from ``change`` or for a file that cannot be used; nothing
        is written then.
        """
        with _locked(self.path):
            current = self._read()
            new = change(current)
            if new != current:
                _write_atomically(self.path, new.to_json())
            self.state = new
            self._seen = self._stamp()
            return new


class NodeAclStore:
    """The ACL a node received from central, backed by ``<etc>/acl/node.json``.

    ``acl`` is None until one was received (a node with ``enable_acl_check`` then runs
    nothing but its own messages).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / NODE_FILE
        text = _read_text(self.path)
        self.acl: NodeAcl | None = None
        self.version = 0
        if text is not None:
            self.acl, self.version = NodeAcl.from_json(text, source=str(self.path))

    @property
    def hash(self) -> bytes:
        """The hash of the ACL in use (all zero when none was received)."""
        return bytes(32) if self.acl is None else self.acl.hash

    def save(self, acl: NodeAcl, version: int) -> None:
        """Write ``acl`` and use it from now on; raises AclError when it cannot be written."""
        with _locked(self.path):
            _write_atomically(self.path, acl.to_json(version))
        self.acl, self.version = acl, version
