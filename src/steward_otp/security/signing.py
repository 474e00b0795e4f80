"""Message signatures: the canonical bytes of a message, signing, and the verification verdict.

Pure functions: no files, no clock (the caller passes the time); the one state kept is the
set of batch signatures already verified with an allowed key (see :func:`check`).

**What is signed.** Every field of the message except the signature itself, with ``data``
replaced by its SHA-256, plus the signer's node name and the signing time:

``CBOR ["steward-otp message signature v1", signer, signed_at_ms, [fields]]``

where ``[fields]`` are the values of every field in wire order (``toNode``, ``toNodes``,
``id``, ``data`` as its SHA-256, ``method``, ``methodArgs``, then the rest, the relay fields,
then ``jetstream`` when it is set), ``argSignature`` left out; a nested ``previousMessage``
is the same array (with its own ``argSignature`` and the SHA-256 of its ``data``).
Changing any field after signing -- the destination, the method, an argument, a byte of
data, a timeout, a relay field -- makes the signature fail. Steward signed only
``methodArgs``, so a captured message could be re-targeted or given new data.

**Where it travels.** In the message's ``argSignature`` field (Steward's field, no wire
change), as ``CBOR [1, signer, signed_at_ms, sha256(data), ed25519 signature]``. The SHA-256
of ``data`` is carried so that a nested request (``previousMessage`` of a reply, whose data is
cleared) could still be checked later; for the message itself it must equal the SHA-256 of
the data received.

**Batches.** Messages prepared together (whatever is handed to the outbox in one go: an
input's document, the replies of one quick batch, a push of keys) are signed with one
Ed25519 signature (:func:`sign_batch`; the ``signature_batches`` setting can turn it off):
each message's canonical bytes are a leaf of a Merkle tree
(``SHA-256(0x00 || canonical bytes)``; a node is
``SHA-256(0x01 || left || right)``; the last node of a level with an odd count goes up
unchanged), and the signature covers ``CBOR ["steward-otp batch signature v1", signer,
signed_at_ms, size, root]``. Each message carries the record
``CBOR [2, signer, signed_at_ms, sha256(data), ed25519 signature, size, index, [proof]]``: its
place in the batch and the sibling hashes from its leaf to the root. A batch holds at most
:data:`MAX_SIGNING_BATCH` messages (a proof of at most 6 hashes); a batch of one is signed
as a single message. The guarantees are those of a single signature: changing any field of
any message, its place or its proof makes its signature fail, and a message verifies alone,
without the rest of its batch. A verifier that has checked a batch's signature remembers it
(:func:`check` then costs a few hashes for the other messages of that batch).

**Verification** (:func:`check`) answers None (allowed) or a :class:`Refusal` with a reason
an operator can act on: not signed, not a steward-otp signature, unknown signer, bad
signature, data altered, re-targeted (valid signature, but for another node or method), too
old, or signed in the future.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Union

import attrs
import cbor2
import nacl.exceptions
import nacl.signing

from steward_otp.message import FIELD_NAMES, Message

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from steward_otp.methods import method_base_name

__all__ = [
    "BATCH_DOMAIN",
    "BATCH_SIGNATURE_VERSION",
    "CLOCK_SKEW_SECONDS",
    "DOMAIN",
    "MAX_SIGNING_BATCH",
    "SIGNATURE_VERSION",
    "BatchPlace",
    "Expected",
    "KeyLookup",
    "Refusal",
    "RefusalKind",
    "Signature",
    "SignatureFormatError",
    "canonical_bytes",
    "check",
    "data_digest",
    "describe_age",
    "public_key_object",
    "sign",
    "sign_batch",
    "sign_values",
    "verifies_with",
]

SIGNATURE_VERSION: Final = 1
"""The version of the signature record and of the canonical encoding."""
DOMAIN: Final = "steward-otp message signature v1"
"""First element of the signed bytes: these bytes are a message signature and nothing else."""
BATCH_SIGNATURE_VERSION: Final = 2
"""The version of the record of a message signed in a batch."""
BATCH_DOMAIN: Final = "steward-otp batch signature v1"
"""First element of the bytes a batch signature covers."""
MAX_SIGNING_BATCH: Final = 64
"""Most messages under one batch signature: a proof of at most 6 hashes (about 200 bytes)."""
CLOCK_SKEW_SECONDS: Final = 300.0
"""How far in the future a signing time may be (clocks of nodes differ a little)."""

_SIGNATURE_BYTES: Final = 64
_DIGEST_BYTES: Final = 32
_KEY_BYTES: Final = 32
_MAX_PROOF: Final = 32
"""Most proof hashes a record may carry (a batch of 2**32 messages): a bound on the work
that verifying a hostile record can cause."""
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"

PrivateKey = Union["nacl.signing.SigningKey", "Ed25519PrivateKey"]
"""A node's private Ed25519 key: libsodium's, as the key files load it, or ``cryptography``'s
(loaded only by whoever passes one)."""

KeyLookup = Callable[[str], bytes | None]
"""The allowed raw 32-byte public key of a node name, or None when it has none here."""


class SignatureFormatError(ValueError):
    """``argSignature`` does not hold a steward-otp signature record; the text says why."""


@attrs.frozen
class BatchPlace:
    """Where a message signed in a batch stands in it: what its signature needs besides it."""

    size: int
    """Messages in the batch (at least 2)."""
    index: int
    """This message's place, from 0."""
    proof: tuple[bytes, ...]
    """The sibling hashes from this message's leaf up to the root."""


@attrs.frozen
class Signature:
    """The record carried in ``argSignature``."""

    signer: str
    """Node name whose key made the signature."""
    signed_at_ms: int
    """Wall-clock time of signing, milliseconds since the epoch."""
    data_sha256: bytes
    """SHA-256 of the message's ``data`` when it was signed."""
    value: bytes
    """The 64-byte Ed25519 signature over :func:`canonical_bytes` (or, in a batch, over the
    batch's root)."""
    batch: BatchPlace | None = None
    """The message's place in its batch; None for a message signed alone."""

    def encode(self) -> bytes:
        """The bytes to put in ``argSignature``."""
        head = [self.signer, self.signed_at_ms, self.data_sha256, self.value]
        if self.batch is None:
            return bytes(cbor2.dumps([SIGNATURE_VERSION, *head]))
        place = self.batch
        return bytes(
            cbor2.dumps(
                [BATCH_SIGNATURE_VERSION, *head, place.size, place.index, list(place.proof)]
            )
        )

    @classmethod
    def parse(cls, raw: bytes) -> Signature:
        """Read a record from ``argSignature``; raises :class:`SignatureFormatError` and
        nothing else, whatever the bytes hold."""
        try:
            return _parse_record(raw)
        except SignatureFormatError:
            raise
        except Exception as exc:  # a hostile record must not crash whoever reads it
            raise SignatureFormatError(
                f"argSignature is not a steward-otp signature record ({type(exc).__name__})"
            ) from None


def _parse_record(raw: bytes) -> Signature:
    if len(raw) == _SIGNATURE_BYTES:
        # Exactly an Ed25519 signature: what a Go Steward node puts there.
        raise SignatureFormatError(
            "argSignature holds a bare 64-byte signature (a Go Steward signature over "
            "methodArgs only?); steward-otp signs the whole message"
        )
    try:
        value = cbor2.loads(raw)
    except Exception as exc:
        raise SignatureFormatError(
            f"argSignature is not a steward-otp signature record: {exc}"
        ) from exc
    if type(value) is not list or len(value) not in (5, 8):
        raise SignatureFormatError(
            "argSignature is not a steward-otp signature record: expected "
            "[version, signer, signedAt, dataSha256, signature] or, signed in a batch, "
            "[version, signer, signedAt, dataSha256, signature, size, index, proof]"
        )
    version = value[0]
    if type(version) is not int or version not in (SIGNATURE_VERSION, BATCH_SIGNATURE_VERSION):
        small = type(version) is int and abs(version) < 1 << 32
        raise SignatureFormatError(
            f"argSignature: signature version {version if small else '(not a small integer)'}"
            f" is not supported; allowed: {SIGNATURE_VERSION}, {BATCH_SIGNATURE_VERSION}"
        )
    expected_length = 5 if version == SIGNATURE_VERSION else 8
    if len(value) != expected_length:
        raise SignatureFormatError(
            f"argSignature: a version {version} record has {expected_length} items, "
            f"not {len(value)}"
        )
    signer, signed_at, digest, signature = value[1:5]
    if type(signer) is not str or not signer:
        raise SignatureFormatError("argSignature: the signer's node name is missing")
    if type(signed_at) is not int:
        raise SignatureFormatError("argSignature: the signing time is not an integer")
    if type(digest) is not bytes or len(digest) != _DIGEST_BYTES:
        raise SignatureFormatError("argSignature: the data digest is not 32 bytes")
    if type(signature) is not bytes or len(signature) != _SIGNATURE_BYTES:
        raise SignatureFormatError("argSignature: the signature is not 64 bytes")
    batch = None if version == SIGNATURE_VERSION else _parse_place(*value[5:])
    return Signature(signer, signed_at, digest, signature, batch)


def _parse_place(size: object, index: object, proof: object) -> BatchPlace:
    """The batch part of a version 2 record; raises :class:`SignatureFormatError`."""
    if type(size) is not int or not 2 <= size <= 1 << _MAX_PROOF:
        raise SignatureFormatError(
            "argSignature: the batch size is not a whole number from 2 to 2**32"
        )
    if type(index) is not int or not 0 <= index < size:
        raise SignatureFormatError(
            f"argSignature: the place in the batch is not a whole number from 0 to {size - 1}"
        )
    if (
        type(proof) is not list
        or len(proof) > _MAX_PROOF
        or not all(type(h) is bytes and len(h) == _DIGEST_BYTES for h in proof)
    ):
        raise SignatureFormatError(
            "argSignature: the batch proof is not a list of at most 32 hashes of 32 bytes"
        )
    return BatchPlace(size, index, tuple(proof))


def data_digest(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    return hashlib.sha256(data).digest()


_SIGNATURE_INDEX: Final = FIELD_NAMES.index("arg_signature")
_DATA_INDEX: Final = FIELD_NAMES.index("data")
_PREVIOUS_INDEX: Final = FIELD_NAMES.index("previous_message")
_JETSTREAM_INDEX: Final = FIELD_NAMES.index("jetstream")


def _fields(message: Message, digest: bytes, *, nested: bool) -> list[Any]:
    """The field values in wire order: ``data`` as ``digest``; ``argSignature`` left out at
    the top (it is the signature) and kept in a nested ``previousMessage``."""
    return _signed_fields(list(message.field_values()), digest, nested=nested)


def _signed_fields(values: list[Any], digest: bytes, *, nested: bool) -> list[Any]:
    """:func:`_fields` of a message given by its field ``values`` (a fresh list, changed)."""
    values[_DATA_INDEX] = digest
    previous = values[_PREVIOUS_INDEX]
    if previous is not None:
        values[_PREVIOUS_INDEX] = _fields(previous, data_digest(previous.data), nested=True)
    if values[_JETSTREAM_INDEX] is None:
        del values[_JETSTREAM_INDEX]  # unset: the same bytes as before the field existed
    if not nested:
        del values[_SIGNATURE_INDEX]
    return values


def canonical_bytes(
    message: Message, *, signer: str, signed_at_ms: int, data_sha256: bytes | None = None
) -> bytes:
    """The bytes a signature covers (see the module docstring).

    ``data_sha256`` defaults to the SHA-256 of ``message.data``. Equal messages give equal
    bytes; messages that differ in any field other than ``argSignature`` give different
    bytes. Raises ``ValueError`` for text that has no UTF-8 form (a lone surrogate).
    """
    digest = data_digest(message.data) if data_sha256 is None else data_sha256
    return _canonical(_fields(message, digest, nested=False), signer, signed_at_ms)


def _canonical(fields: list[Any], signer: str, signed_at_ms: int) -> bytes:
    try:
        # Arrays, integers, text, bytes, booleans and null only: CBOR's encoding of these
        # is unique, so no canonical mode (map key sorting) is needed.
        encoded = cbor2.dumps([DOMAIN, signer, signed_at_ms, fields])
    except UnicodeEncodeError as exc:
        raise ValueError(f"message text is not valid Unicode: {exc}") from exc
    return bytes(encoded)


def sign(message: Message, key: PrivateKey, *, signer: str, now: float) -> Message:
    """``message`` with ``argSignature`` set: signed by ``key`` as node ``signer`` at ``now``.

    ``now`` is wall-clock seconds since the epoch. Any signature already there is replaced.
    """
    values = list(message.field_values())
    sign_values(values, key, signer=signer, now=now)
    return Message.from_field_values(values)


def sign_values(values: list[Any], key: PrivateKey, *, signer: str, now: float) -> None:
    """Set ``argSignature`` in ``values``, a message's field values in
    :data:`~steward_otp.message.FIELD_NAMES` order: :func:`sign` for a message not built yet
    (the caller builds it once, signed).
    """
    signed_at_ms = math.floor(now * 1000)
    digest = data_digest(values[_DATA_INDEX])
    canonical = _canonical(_signed_fields(list(values), digest, nested=False), signer, signed_at_ms)
    value = _signing_key(key).sign(canonical).signature
    values[_SIGNATURE_INDEX] = Signature(signer, signed_at_ms, digest, value).encode()


def sign_batch(batch: Sequence[list[Any]], key: PrivateKey, *, signer: str, now: float) -> None:
    """:func:`sign_values` for several messages at once: set ``argSignature`` in each list
    of field values, with one Ed25519 signature per :data:`MAX_SIGNING_BATCH` messages (see
    the module docstring). Each message verifies on its own, as one signed alone does."""
    for start in range(0, len(batch), MAX_SIGNING_BATCH):
        part = batch[start : start + MAX_SIGNING_BATCH]
        if len(part) == 1:
            sign_values(part[0], key, signer=signer, now=now)
            continue
        signed_at_ms = math.floor(now * 1000)
        digests = [data_digest(values[_DATA_INDEX]) for values in part]
        leaves = [
            _leaf(
                _canonical(_signed_fields(list(values), digest, nested=False), signer, signed_at_ms)
            )
            for values, digest in zip(part, digests, strict=True)
        ]
        levels = _tree(leaves)
        size = len(part)
        value = _signing_key(key).sign(_batch_bytes(signer, signed_at_ms, size, levels[-1][0]))
        for index, (values, digest) in enumerate(zip(part, digests, strict=True)):
            place = BatchPlace(size, index, _proof(levels, index))
            record = Signature(signer, signed_at_ms, digest, value.signature, place)
            values[_SIGNATURE_INDEX] = record.encode()


def _leaf(canonical: bytes) -> bytes:
    return hashlib.sha256(_LEAF + canonical).digest()


def _parent(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _tree(leaves: list[bytes]) -> list[list[bytes]]:
    """The levels of the Merkle tree over ``leaves``, from the leaves up to ``[root]``."""
    levels = [leaves]
    while len(level := levels[-1]) > 1:
        up = [_parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])  # the odd one out goes up unchanged
        levels.append(up)
    return levels


def _proof(levels: list[list[bytes]], index: int) -> tuple[bytes, ...]:
    """The sibling hashes of leaf ``index``, from the bottom up (none where it has none)."""
    proof = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return tuple(proof)


def _root(leaf: bytes, place: BatchPlace) -> bytes | None:
    """The root that ``leaf`` at ``place`` leads to, or None when the proof does not fit
    the batch's shape (too few or too many hashes)."""
    node, index, width, hashes = leaf, place.index, place.size, iter(place.proof)
    while width > 1:
        if index ^ 1 < width:  # else: the odd one out, carried up unchanged
            sibling = next(hashes, None)
            if sibling is None:
                return None
            node = _parent(sibling, node) if index % 2 else _parent(node, sibling)
        index //= 2
        width = (width + 1) // 2
    return node if next(hashes, None) is None else None


def _batch_bytes(signer: str, signed_at_ms: int, size: int, root: bytes) -> bytes:
    """The bytes a batch signature covers."""
    return bytes(cbor2.dumps([BATCH_DOMAIN, signer, signed_at_ms, size, root]))


class RefusalKind(enum.Enum):
    """Why a message was refused."""

    NOT_SIGNED = "not signed"
    MALFORMED = "malformed signature"
    UNKNOWN_SIGNER = "unknown signer"
    BAD_SIGNATURE = "bad signature"
    DATA_ALTERED = "data altered"
    RETARGETED = "re-targeted"
    TOO_OLD = "too old"
    FUTURE = "signed in the future"


@attrs.frozen
class Refusal:
    """A message that must not run, and the reason in words (without the message's id:
    :func:`steward_otp.security.verify.decide` says which message)."""

    kind: RefusalKind
    reason: str
    signature: Signature | None = None

    def __str__(self) -> str:
        return self.reason


@attrs.frozen
class Expected:
    """Where a message arrived and when: what its signature must agree with."""

    node: str
    """The node name of the subject it arrived on."""
    method: str
    """The method whose subject it arrived on."""
    now: float
    """Wall-clock seconds since the epoch."""
    max_age: float
    """Oldest signing time accepted, in seconds before ``now``."""
    clock_skew: float = CLOCK_SKEW_SECONDS


def describe_age(seconds: float) -> str:
    """``seconds`` in the largest fitting unit: ``45 s``, ``12 min``, ``5.5 h``, ``8.0 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


_PUBLIC_KEYS: dict[bytes, nacl.signing.VerifyKey] = {}
_SIGNING_KEYS: dict[int, tuple[Ed25519PrivateKey, nacl.signing.SigningKey]] = {}
"""libsodium keys of ``cryptography`` key objects, by ``id`` of the object (kept alive)."""


def public_key_object(raw: bytes) -> nacl.signing.VerifyKey:
    """The verifying key for a raw 32-byte public key (cached: building one costs more
    than a verification). Raises ``ValueError`` for a value that is not a public key.

    Signatures are made and checked with libsodium (PyNaCl): the same Ed25519 (RFC 8032)
    as the key files' ``cryptography`` objects, at about half the cost per message.
    """
    key = _PUBLIC_KEYS.get(raw)
    if key is None:
        if len(raw) != _KEY_BYTES:
            raise ValueError(f"a public key has 32 bytes, not {len(raw)}")
        key = nacl.signing.VerifyKey(raw)
        if len(_PUBLIC_KEYS) > 4096:
            _PUBLIC_KEYS.clear()
        _PUBLIC_KEYS[raw] = key
    return key


def _signing_key(key: PrivateKey) -> nacl.signing.SigningKey:
    """``key`` as libsodium's signing key: itself, or for a ``cryptography`` key object the
    libsodium key of its seed (cached per key object, which the cache keeps alive so that its
    ``id`` is not reused)."""
    if isinstance(key, nacl.signing.SigningKey):
        return key
    cached = _SIGNING_KEYS.get(id(key))
    if cached is None or cached[0] is not key:
        if len(_SIGNING_KEYS) > 64:
            _SIGNING_KEYS.clear()
        cached = (key, nacl.signing.SigningKey(key.private_bytes_raw()))
        _SIGNING_KEYS[id(key)] = cached
    return cached[1]


def _verifies(raw_key: bytes, value: bytes, signed: bytes) -> bool:
    """Whether ``value`` is ``raw_key``'s Ed25519 signature over ``signed``."""
    try:
        public_key_object(raw_key).verify(signed, value)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


_VERIFIED_BATCHES: dict[tuple[bytes, bytes, bytes], None] = {}
"""Batch signatures found good with an allowed key: (public key, signature, signed bytes),
the oldest dropped first beyond :data:`_VERIFIED_KEPT`. A message of such a batch still needs
its own leaf and proof to lead to the signed root."""
_VERIFIED_KEPT: Final = 1024


def _holds(raw_key: bytes, signature: Signature, signed: bytes, *, remember: bool) -> bool:
    """Whether ``signature`` is ``raw_key``'s over the message whose canonical bytes are
    ``signed``: directly, or through its batch's root. With ``remember`` (``raw_key`` is an
    allowed key, not one a message brought along) a good batch signature is kept."""
    place = signature.batch
    if place is None:
        return _verifies(raw_key, signature.value, signed)
    root = _root(_leaf(signed), place)
    if root is None:
        return False
    batch = _batch_bytes(signature.signer, signature.signed_at_ms, place.size, root)
    known = (raw_key, signature.value, batch)
    if known in _VERIFIED_BATCHES:
        return True
    if not _verifies(raw_key, signature.value, batch):
        return False
    if remember:
        if len(_VERIFIED_BATCHES) >= _VERIFIED_KEPT:
            _VERIFIED_BATCHES.pop(next(iter(_VERIFIED_BATCHES)), None)  # the oldest
        _VERIFIED_BATCHES[known] = None
    return True


def check(
    message: Message, keys: KeyLookup, expected: Expected, *, remember: bool = True
) -> Refusal | None:
    """None when ``message`` may run where it arrived; otherwise why not.

    ``remember``: ``keys`` gives allowed keys only, so a batch signature found good may be
    kept for the other messages of its batch (False when a key comes from the message).

    The order: a signature must be there and readable; its signer must have an allowed key
    (``keys``); the signature must verify over the message as received; the data must be
    the data signed; the signed ``toNode`` and ``method`` must be where it arrived (a valid
    signature for another node or method is a re-targeted message); the signing time must
    be at most ``expected.max_age`` seconds old and not ahead of ``expected.now`` by more
    than ``expected.clock_skew``.
    """
    if not message.arg_signature:
        return Refusal(
            RefusalKind.NOT_SIGNED,
            'message is not signed (field "argSignature" is empty); this node '
            "runs only messages signed by an allowed key",
        )
    try:
        signature = Signature.parse(message.arg_signature)
    except SignatureFormatError as exc:
        return Refusal(RefusalKind.MALFORMED, str(exc))
    signer = signature.signer
    raw_key = keys(signer)
    if raw_key is None:
        return Refusal(
            RefusalKind.UNKNOWN_SIGNER,
            f"unknown signer {signer!r}: no allowed public key for it on {expected.node}",
            signature,
        )
    signed = canonical_bytes(
        message,
        signer=signer,
        signed_at_ms=signature.signed_at_ms,
        data_sha256=signature.data_sha256,
    )
    if not _holds(raw_key, signature, signed, remember=remember):
        return Refusal(
            RefusalKind.BAD_SIGNATURE,
            f"bad signature: the message does not verify with the allowed "
            f"key of {signer!r} (changed after signing, or signed with another key)",
            signature,
        )
    if data_digest(message.data) != signature.data_sha256:
        return Refusal(
            RefusalKind.DATA_ALTERED,
            'field "data" was changed after signing (its SHA-256 differs from the signed one)',
            signature,
        )
    if message.to_node != expected.node:
        return Refusal(
            RefusalKind.RETARGETED,
            f"re-targeted: signed for toNode {message.to_node!r}, arrived at {expected.node!r}",
            signature,
        )
    if method_base_name(message.method) != method_base_name(expected.method):
        return Refusal(
            RefusalKind.RETARGETED,
            f"re-targeted: signed for method {message.method!r}, arrived on "
            f"the subject of {expected.method!r}",
            signature,
        )
    age = expected.now - signature.signed_at_ms / 1000
    if age > expected.max_age:
        return Refusal(
            RefusalKind.TOO_OLD,
            f"too old: signed {describe_age(age)} ago by {signer!r}; "
            f"signature_max_age here is {describe_age(expected.max_age)}",
            signature,
        )
    if -age > expected.clock_skew:
        return Refusal(
            RefusalKind.FUTURE,
            f"signed {describe_age(-age)} in the future by {signer!r} (its "
            f"clock is ahead; at most {describe_age(expected.clock_skew)} is allowed)",
            signature,
        )
    return None


def verifies_with(message: Message, raw_key: bytes) -> bool:
    """Whether ``message`` carries a steward-otp signature that ``raw_key`` verifies, over
    the message as it is (data included). Nothing else is checked (not signer, time or
    target): for proofs that a sender holds a key, such as a hello carrying its key."""
    try:
        signature = Signature.parse(message.arg_signature)
        signed = canonical_bytes(
            message,
            signer=signature.signer,
            signed_at_ms=signature.signed_at_ms,
            data_sha256=signature.data_sha256,
        )
    except (SignatureFormatError, ValueError):
        return False
    return _holds(raw_key, signature, signed, remember=False) and (
        data_digest(message.data) == signature.data_sha256
    )
