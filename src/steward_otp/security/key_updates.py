"""Key distribution: every node learns from central which public keys are allowed.

As Steward (spec 8.4), by pull with a hash, but signed and persisted:

* A node with ``enable_key_updates`` sends ``REQKeysRequestUpdate`` to central every
  ``keys_update_interval`` seconds (the first at start), its data the SHA-256 of the keys
  it holds (:func:`keys_hash`; 32 zero bytes for none).
* Central (``is_central_auth``) answers with ``REQKeysDeliverUpdate`` only when its own
  view differs: a JSON document ``{"central": NAME, "keys": {node: base64 key}}`` holding
  every allowed key and central's own. When an operator allows or deletes a key with
  REQKeysAllow/REQKeysDelete, central also pushes the new document to every node it allows.
* The node accepts a delivery only when it is signed by central: with central's key from
  ``central_public_key`` or keys.json; without either, **on first contact** it takes the
  key the document names for central, checks the delivery's signature with it, and records
  it in keys.json (logged as a warning). From then on a delivery that names another key for
  central, or that central's recorded key does not verify, is refused and reported: a
  changed central key is re-established by hand, never by the network.
* The delivered keys replace the allowed keys of keys.json (pending keys stay); the node's
  own name is never taken from the document (its own key is always its own).

The document and hash functions are pure; :class:`KeyUpdates` holds the node's side.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import trio

from steward_otp.message import Message
from steward_otp.security.keyfiles import decode_key_text, encode_key_text
from steward_otp.security.signing import Expected, Signature, SignatureFormatError, check
from steward_otp.security.trust import TrustError, TrustState, TrustStore
from steward_otp.timers import Outbox, submit_every

__all__ = [
    "KEYS_DELIVER_METHOD",
    "KEYS_REQUEST_METHOD",
    "KeyDocument",
    "KeyUpdateError",
    "KeyUpdates",
    "keys_hash",
]

log = logging.getLogger(__name__)

KEYS_REQUEST_METHOD: Final = "REQKeysRequestUpdate"
KEYS_DELIVER_METHOD: Final = "REQKeysDeliverUpdate"
KEYS_REQUEST_DIRECTORY: Final = "keysRequestUpdate"
KEYS_REQUEST_FILE: Final = "keysRequestUpdate.log"
EMPTY_HASH: Final = bytes(32)


class KeyUpdateError(ValueError):
    """A key delivery or request that cannot be used; the text says why."""


def keys_hash(keys: Mapping[str, bytes]) -> bytes:
    """SHA-256 of the canonical JSON of ``keys`` (node → raw key); 32 zero bytes for none."""
    if not keys:
        return EMPTY_HASH
    canonical = {node: encode_key_text(key) for node, key in keys.items()}
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).digest()


class KeyDocument:
    """What REQKeysDeliverUpdate carries: central's name and every allowed key."""

    def __init__(self, central: str, keys: Mapping[str, bytes]) -> None:
        self.central = central
        self.keys = dict(keys)

    @property
    def hash(self) -> bytes:
        """:func:`keys_hash` of the keys."""
        return keys_hash(self.keys)

    def to_json(self) -> bytes:
        """The document's bytes (keys sorted: the same keys give the same bytes)."""
        keys = {node: encode_key_text(self.keys[node]) for node in sorted(self.keys)}
        return json.dumps({"central": self.central, "keys": keys}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> KeyDocument:
        """Read a delivery; raises :class:`KeyUpdateError` naming what is wrong."""
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise KeyUpdateError(f"the key document is not JSON: {exc}") from None
        if not isinstance(document, dict) or set(document) != {"central", "keys"}:
            raise KeyUpdateError('the key document must be {"central": NAME, "keys": {...}}')
        central, keys = document["central"], document["keys"]
        if not isinstance(central, str) or not isinstance(keys, dict):
            raise KeyUpdateError('"central" must be a node name and "keys" an object')
        decoded: dict[str, bytes] = {}
        for node, text in keys.items():
            if not isinstance(text, str):
                raise KeyUpdateError(f"the key of {node!r} must be a base64 string")
            try:
                decoded[node] = decode_key_text(text, size=32, what=f"the key of {node!r}")
            except ValueError as exc:
                raise KeyUpdateError(str(exc)) from None
        return cls(central, decoded)


def key_request_message(node: str, central: str, held: bytes, *, ack_timeout: int) -> Message:
    """The request for central's allowed keys (data: the hash of the keys ``node`` holds)."""
    return Message(
        to_node=central,
        from_node=node,
        method=KEYS_REQUEST_METHOD,
        data=held,
        reply_method=KEYS_DELIVER_METHOD,
        directory=KEYS_REQUEST_DIRECTORY,
        file_name=KEYS_REQUEST_FILE,
        ack_timeout=ack_timeout,
        retries=1,
        reply_ack_timeout=ack_timeout,
        reply_retries=1,
    )


class KeyUpdates:
    """Both sides of key distribution for one node (``Node.security.key_updates``).

    ``own_key`` is the node's public key; ``central_key`` returns the key trusted for the
    central node now (``central_public_key`` or keys.json), or None; ``clock`` and
    ``max_age`` are those of signature checks.
    """

    def __init__(
        self,
        *,
        node_name: str,
        central_name: str,
        own_key: bytes,
        trust: TrustStore,
        central_key: Callable[[], bytes | None],
        authority: bool,
        enabled: bool,
        interval: float,
        clock: Callable[[], float],
        max_age: float,
    ) -> None:
        self.node_name = node_name
        self.central_name = central_name
        self.own_key = own_key
        self.trust = trust
        self.central_key = central_key
        self.authority = authority
        self.enabled = enabled
        self.interval = interval
        self.clock = clock
        self.max_age = max_age

    # ------------------------------------------------------------------ central

    def document(self) -> KeyDocument:
        """Central's view: every allowed key, and its own."""
        keys = dict(self.trust.state.allowed)
        keys[self.node_name] = self.own_key
        return KeyDocument(self.node_name, keys)

    def answer_request(self, held: bytes) -> bytes | None:
        """Central's answer to a node holding keys with hash ``held``: the document, or None
        when the node is up to date. Raises :class:`KeyUpdateError` off the authority."""
        if not self.authority:
            raise KeyUpdateError(
                f"{self.node_name} is not the key authority (is_central_auth = false); "
                f"ask the central node ({self.central_name})"
            )
        document = self.document()
        return None if document.hash == held else document.to_json()

    def push_messages(self, *, ack_timeout: int) -> list[Message]:
        """On central after a change: the new document for every node it allows."""
        data = self.document().to_json()
        return [
            Message(
                to_node=node,
                from_node=self.node_name,
                method=KEYS_DELIVER_METHOD,
                data=data,
                ack_timeout=ack_timeout,
                retries=3,
                reply_method="REQNone",
            )
            for node in sorted(self.trust.state.allowed)
            if node != self.node_name
        ]

    # ------------------------------------------------------------------ node

    def held(self) -> Mapping[str, bytes]:
        """The keys this node holds, as central would list them (its own included)."""
        keys = dict(self.trust.state.allowed)
        keys[self.node_name] = self.own_key
        known = self.central_key()
        if known is not None:
            keys[self.central_name] = known
        return keys

    def _verify(self, message: Message, document: KeyDocument) -> bytes | None:
        """Check a delivery's signer and signature; central's key, or None when it was
        trusted before. Raises :class:`KeyUpdateError`."""
        try:
            signer = Signature.parse(message.arg_signature).signer
        except SignatureFormatError:
            raise KeyUpdateError("a key delivery must be signed by the central node") from None
        if signer != self.central_name or document.central != self.central_name:
            raise KeyUpdateError(
                f"keys from {signer!r} are refused: only the central node "
                f"({self.central_name}) delivers keys"
            )
        offered = document.keys.get(self.central_name)
        known = self.central_key()
        if known is not None and offered is not None and offered != known:
            raise KeyUpdateError(
                f"the delivery names a key for {self.central_name} different from the one "
                "trusted here; a change of central's key is not taken from the network: "
                "check it and set it by hand (central_public_key or steward-otp keys add)"
            )
        key = known if known is not None else offered
        if key is None:
            raise KeyUpdateError(f"the delivery holds no key for {self.central_name}")
        expected = Expected(self.node_name, message.method, self.clock(), self.max_age)
        refusal = check(message, lambda node: key if node == self.central_name else None, expected)
        if refusal is not None:
            raise KeyUpdateError(f"the key delivery is refused: {refusal.reason}")
        return None if known is not None else key

    async def adopt(self, message: Message) -> tuple[int, bool]:
        """Use the keys a REQKeysDeliverUpdate carries; returns (allowed keys now, whether
        central's key was trusted on first contact). Raises :class:`KeyUpdateError`."""
        if not self.enabled:
            raise KeyUpdateError(
                f"keys from {message.from_node!r} are refused: key updates are off here "
                "(enable_key_updates = false)"
            )
        document = KeyDocument.from_json(message.data)
        first_contact = self._verify(message, document)
        delivered = {n: k for n, k in document.keys.items() if n != self.node_name}
        if document.keys.get(self.node_name, self.own_key) != self.own_key:
            log.warning(
                "node %s: %s allows a key for this node that is not its own key; it signs "
                "with its own, which the others refuse until central allows it",
                self.node_name,
                self.central_name,
            )

        def replace(current: TrustState) -> TrustState:
            return TrustState(delivered, current.pending)

        try:
            state = await trio.to_thread.run_sync(self.trust.update, replace)
        except TrustError as exc:
            raise KeyUpdateError(str(exc)) from None
        if first_contact is not None:
            log.warning(
                "node %s: trusting %s's key %s on first contact (a later change of it is refused)",
                self.node_name,
                self.central_name,
                encode_key_text(first_contact),
            )
        return len(state.allowed), first_contact is not None

    @property
    def asks_central(self) -> bool:
        """Whether this node runs the key update timer (not on the authority itself)."""
        return self.enabled and not (self.authority and self.node_name == self.central_name)

    async def update_loop(
        self,
        node: Outbox,
        *,
        ack_timeout: int,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Ask central for the allowed keys now and every ``keys_update_interval`` seconds."""
        await submit_every(
            node,
            self.interval,
            lambda: key_request_message(
                self.node_name, self.central_name, keys_hash(self.held()), ack_timeout=ack_timeout
            ),
            task_status=task_status,
        )
