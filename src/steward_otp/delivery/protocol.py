"""The wire protocol of delivery, version 2 (see ``docs/protocol.md``).

A sender publishes each message as a plain NATS publish whose reply subject is its
destination's ACK inbox and whose headers carry :data:`VERSION_HEADER`. The receiver answers
each batch it drained with ONE :class:`Ack` per reply subject: the ids it has made durable
(new or seen before) and the ids it refuses, each with the reason.

A message without :data:`VERSION_HEADER` comes from a Go Steward node or another request/reply
sender: it is ACKed alone with an empty payload, as Steward does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import attrs
import cbor2

VERSION: Final = 2
"""The protocol version this node speaks."""

VERSION_HEADER: Final = "sotp"
"""Header naming the sender's protocol version; absent for Steward's request/reply."""

SUPPORTED_VERSIONS: Final = frozenset({VERSION})


class AckDecodeError(ValueError):
    """An ACK payload that is not a version-2 ACK record."""


@attrs.frozen
class Ack:
    """One receiver's answer to one batch from one sender.

    ``accepted``: ids that are durable on the receiver (each runs exactly once there);
    ``rejected``: ``(id, reason)`` for messages the receiver will never run.
    """

    accepted: tuple[str, ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        """The ACK's bytes on the wire (a CBOR map)."""
        return cbor2.dumps(
            {"v": VERSION, "ok": list(self.accepted), "rej": [list(r) for r in self.rejected]}
        )

    @classmethod
    def decode(cls, payload: bytes) -> Ack:
        """Parse an ACK; raises AckDecodeError naming what is wrong, and nothing else."""
        try:
            return cls._decode(payload)
        except AckDecodeError:
            raise
        except Exception as exc:  # whatever a hostile payload may cause
            raise AckDecodeError(f"ACK is not readable ({type(exc).__name__})") from None

    @classmethod
    def _decode(cls, payload: bytes) -> Ack:
        try:
            record = cbor2.loads(payload)
        except Exception as exc:  # cbor2 raises several types for garbage
            raise AckDecodeError(f"ACK is not CBOR: {exc}") from exc
        if not isinstance(record, dict):
            raise AckDecodeError(f"ACK is a {type(record).__name__}, expected a map")
        version = record.get("v")
        if type(version) is not int or version != VERSION:
            shown = version if type(version) is int and abs(version) < 1 << 32 else "?"
            raise AckDecodeError(f"ACK version {shown}; this node speaks {VERSION}")
        accepted = record.get("ok", [])
        rejected = record.get("rej", [])
        if not isinstance(accepted, list) or not all(isinstance(i, str) for i in accepted):
            raise AckDecodeError('ACK field "ok" must be a list of message ids')
        if not isinstance(rejected, list) or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r)
            for r in rejected
        ):
            raise AckDecodeError('ACK field "rej" must be a list of [id, reason] pairs')
        return cls(tuple(accepted), tuple((r[0], r[1]) for r in rejected))


def sender_version(headers: Mapping[str, str] | None) -> str | None:
    """The protocol version a received message names, or None (Steward request/reply)."""
    if not headers:
        return None
    return headers.get(VERSION_HEADER)


def with_version(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus this node's protocol version."""
    return {**headers, VERSION_HEADER: str(VERSION)}


def unsupported_version_reason(version: str) -> str:
    """The rejection reason for a message in a protocol version this node does not speak
    (a header value of any length is shown cut short)."""
    allowed = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
    shown = version if len(version) <= 20 else version[:20] + "..."
    return (
        f'header "{VERSION_HEADER}": protocol version {shown!r} is not supported; '
        f"allowed: {allowed}"
    )


_SUPPORTED_TEXTS: Final = frozenset(str(v) for v in SUPPORTED_VERSIONS)


def is_supported(version: str) -> bool:
    """Whether this node speaks protocol ``version`` (a header value, compared as text:
    ``"2"``, not ``" 2"``, ``"02"`` or ``"²"``)."""
    return version in _SUPPORTED_TEXTS
