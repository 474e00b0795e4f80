"""The trust store: which public key each node name may sign with, and keys waiting for an
operator's approval. Persisted in ``<home>/etc/signing/keys.json``.

::

    {
      "allowed": {"central": "<base64 public key>", ...},
      "pending": {"ship9": {"key": "<base64 public key>", "first_seen": 1718000000.0}, ...}
    }

:class:`TrustState` is the pure, immutable content with its operations (record a hello,
allow, add, delete). :class:`TrustStore` owns the file: every change is a locked
read-modify-write (``keys.json.lock``, so the ``keys`` command and a running node never lose
each other's changes) written atomically, and a running node picks up changes made by others
(:meth:`TrustStore.refresh`, at most once a second).

A node's own key is always trusted for its own name; it is not written to the file.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import attrs

from steward_otp.atomic_file import write_atomically
from steward_otp.config import is_valid_node_name
from steward_otp.limits import text_problem
from steward_otp.security.keyfiles import decode_key_text, encode_key_text

__all__ = [
    "KEYS_FILE",
    "HelloOutcome",
    "PendingKey",
    "TrustError",
    "TrustState",
    "TrustStore",
]

KEYS_FILE: Final = "keys.json"
REFRESH_INTERVAL: Final = 1.0
"""Seconds between checks of keys.json for changes made by others."""


class TrustError(ValueError):
    """A trust store operation or file that cannot be used; the text says why."""


@attrs.frozen
class PendingKey:
    """A public key a node presented (in its hello) that no operator has allowed yet."""

    key: bytes
    first_seen: float


class HelloOutcome(enum.Enum):
    """What a hello's key meant for the trust store."""

    KNOWN = "the allowed key"
    STILL_PENDING = "the key already pending"
    NEW = "a new key, now pending"
    CHANGED = "a key different from the allowed one, now pending"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(mapping.items())))


def _check_node(node: str) -> None:
    if not is_valid_node_name(node):
        problem = text_problem(node)
        raise TrustError(
            f"{node!r} is not a valid node name" + (f": it {problem}" if problem else "")
        )


def _check_key(key: bytes, node: str) -> None:
    if len(key) != 32:
        raise TrustError(f"the key for {node!r} has {len(key)} bytes; an ed25519 key has 32")


@attrs.frozen
class TrustState:
    """Allowed and pending keys by node name (immutable; operations return a new state)."""

    allowed: Mapping[str, bytes] = attrs.field(factory=dict, converter=_frozen)
    pending: Mapping[str, PendingKey] = attrs.field(factory=dict, converter=_frozen)

    def record_hello(self, node: str, key: bytes, now: float) -> tuple[TrustState, HelloOutcome]:
        """The state after ``node`` presented ``key`` in a hello, and what it meant.

        A key equal to the allowed one changes nothing; any other key becomes (or stays)
        pending. An allowed key is never replaced here: a changed key waits for an operator.
        """
        _check_node(node)
        _check_key(key, node)
        if self.allowed.get(node) == key:
            return self, HelloOutcome.KNOWN
        waiting = self.pending.get(node)
        if waiting is not None and waiting.key == key:
            return self, HelloOutcome.STILL_PENDING
        outcome = HelloOutcome.CHANGED if node in self.allowed else HelloOutcome.NEW
        pending = {**self.pending, node: PendingKey(key, now)}
        return attrs.evolve(self, pending=pending), outcome

    def allow(self, nodes: Iterable[str]) -> TrustState:
        """Move the pending keys of ``nodes`` to allowed (all or none).

        Raises :class:`TrustError` naming the nodes that have no pending key.
        """
        wanted = list(dict.fromkeys(nodes))
        if not wanted:
            raise TrustError("name at least one node whose pending key to allow")
        missing = [n for n in wanted if n not in self.pending]
        if missing:
            known = ", ".join(self.pending) or "none"
            raise TrustError(
                f"no pending key for {', '.join(missing)}; nodes with a pending key: {known}"
            )
        allowed = dict(self.allowed)
        pending = dict(self.pending)
        for node in wanted:
            allowed[node] = pending.pop(node).key
        return TrustState(allowed, pending)

    def add(self, node: str, key: bytes) -> TrustState:
        """Allow ``key`` for ``node`` directly (e.g. central's key, given by the operator)."""
        _check_node(node)
        _check_key(key, node)
        pending = {n: p for n, p in self.pending.items() if n != node or p.key != key}
        return TrustState({**self.allowed, node: key}, pending)

    def delete(self, nodes: Iterable[str]) -> TrustState:
        """Forget the allowed and pending keys of ``nodes``.

        Raises :class:`TrustError` naming the nodes that have neither.
        """
        wanted = list(dict.fromkeys(nodes))
        if not wanted:
            raise TrustError("name at least one node whose key to delete")
        missing = [n for n in wanted if n not in self.allowed and n not in self.pending]
        if missing:
            raise TrustError(f"no allowed or pending key for {', '.join(missing)}")
        return TrustState(
            {n: k for n, k in self.allowed.items() if n not in wanted},
            {n: p for n, p in self.pending.items() if n not in wanted},
        )

    def to_json(self) -> str:
        """The text of keys.json."""
        document = {
            "allowed": {n: encode_key_text(k) for n, k in self.allowed.items()},
            "pending": {
                n: {"key": encode_key_text(p.key), "first_seen": p.first_seen}
                for n, p in self.pending.items()
            },
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str) -> TrustState:
        """Read keys.json; raises :class:`TrustError` naming ``source`` and the problem."""
        try:
            document = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise TrustError(f"{source}: not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise TrustError(f'{source}: expected an object with "allowed" and "pending"')
        unknown = set(document) - {"allowed", "pending"}
        if unknown:
            raise TrustError(
                f"{source}: unknown keys {sorted(unknown)}; allowed: 'allowed', 'pending'"
            )
        allowed_doc = document.get("allowed", {})
        pending_doc = document.get("pending", {})
        if not isinstance(allowed_doc, dict) or not isinstance(pending_doc, dict):
            raise TrustError(f'{source}: "allowed" and "pending" must be objects')
        allowed: dict[str, bytes] = {}
        pending: dict[str, PendingKey] = {}
        try:
            for node, text_key in allowed_doc.items():
                _check_node(node)
                if not isinstance(text_key, str):
                    raise TrustError(f"the key of {node!r} must be a base64 string")
                allowed[node] = decode_key_text(text_key, size=32, what=f"the key of {node!r}")
            for node, entry in pending_doc.items():
                _check_node(node)
                if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                    raise TrustError(f'pending {node!r} must be {{"key": "<base64>", ...}}')
                key = decode_key_text(entry["key"], size=32, what=f"the pending key of {node!r}")
                seen = entry.get("first_seen", 0.0)
                if isinstance(seen, bool) or not isinstance(seen, int | float):
                    raise TrustError(f'pending {node!r}: "first_seen" must be a number')
                pending[node] = PendingKey(key, float(seen))
        except (TrustError, ValueError) as exc:
            raise TrustError(f"{source}: {exc}") from None
        return cls(allowed, pending)


class TrustStore:
    """The trust store of one node, backed by ``keys.json`` in ``folder``."""

    def __init__(
        self,
        folder: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.path = folder / KEYS_FILE
        self._lock_path = folder / (KEYS_FILE + ".lock")
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._next_refresh = -float("inf")
        self._seen: tuple[int, int, int] | None = None
        self.state = self._read()[0]

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _read(self) -> tuple[TrustState, tuple[int, int, int] | None]:
        stamp = self._stamp()
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return TrustState(), None
        except (OSError, UnicodeDecodeError) as exc:
            raise TrustError(f"cannot read {self.path}: {exc}") from None
        state = TrustState.from_json(text, source=str(self.path))
        self._seen = stamp
        return state, stamp

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read keys.json when it changed since it was last read (checked at most once
        per ``refresh_interval`` unless ``force``); True when the state changed.

        A file that cannot be read keeps the last good state and raises :class:`TrustError`.
        """
        now = self._clock()
        if not force and now < self._next_refresh:
            return False
        self._next_refresh = now + self._refresh_interval
        if self._stamp() == self._seen:
            return False
        state, _ = self._read()
        changed = state != self.state
        self.state = state
        return changed

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def update(self, change: Callable[[TrustState], TrustState]) -> TrustState:
        """Apply ``change`` to the current file content under the lock and write the result.

        Blocking (file I/O and a lock): call it from a thread in async code. Raises
        :class:`TrustError` from ``change`` or for a file that cannot be read or written;
        nothing is written then.
        """
        with self._locked():
            current, _ = self._read()
            new = change(current)
            if new != current:
                self._write(new)
            self.state = new
            self._seen = self._stamp()
            return new

    def _write(self, state: TrustState) -> None:
        try:
            write_atomically(self.path, state.to_json())
        except OSError as exc:
            raise TrustError(f"cannot write {self.path}: {exc.strerror or exc}") from None
