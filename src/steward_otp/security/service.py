"""A node's security: its signing key, its trust store and the security settings, in one
object that the Node and the key handlers share.

Built when the Node is built: the key pair is loaded (or created on first start) from
``<home>/etc/signing/``, the trust store read from ``keys.json``; a problem there stops the
start with a :class:`SecuritySetupError` (a :class:`~steward_otp.config.ConfigError`) naming
the file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import trio

from steward_otp.config import Config, ConfigError, decode_public_key
from steward_otp.handlers.base import HandlerContext
from steward_otp.message import Message
from steward_otp.security.acl import AclError
from steward_otp.security.acl_service import AclService
from steward_otp.security.key_updates import KEYS_DELIVER_METHOD, KeyUpdates
from steward_otp.security.keyfiles import KeyFileError, load_or_create, signing_dir
from steward_otp.security.signing import (
    Expected,
    Signature,
    SignatureFormatError,
    check,
    sign,
    sign_batch,
    sign_values,
    verifies_with,
)
from steward_otp.security.trust import HelloOutcome, TrustError, TrustState, TrustStore
from steward_otp.security.verify import HELLO_METHOD, VerifyHook, signature_hook

__all__ = ["UNCHECKED_WARNING", "NodeSecurity", "SecuritySetupError"]

log = logging.getLogger(__name__)

UNCHECKED_WARNING = (
    "signature checking is off (enable_signature_check = false): anyone who can publish to "
    "the broker can make node {node} run {methods}. Turn it on for any broker that is not "
    "yours alone; see docs/security.md"
)


class SecuritySetupError(ConfigError):
    """The signing key or the trust store of a node's home cannot be used."""


class NodeSecurity:
    """Signing, verification and key registration for one node."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.folder = signing_dir(config.etc_dir)
        try:
            self.key, self.key_created = load_or_create(self.folder)
            self.trust = TrustStore(self.folder)
            self.acl = AclService(config, verify_delivery=self._central_signed)
        except (KeyFileError, TrustError, AclError) as exc:
            raise SecuritySetupError(str(exc)) from None
        self.node_name = config.node_name
        self.central_node_name = config.central_node_name
        self.central_key = (
            decode_public_key(config.central_public_key) if config.central_public_key else None
        )
        self.signature_check = config.enable_signature_check
        self.signature_batches = config.signature_batches
        self.max_age = config.signature_max_age
        self.central_auth = config.is_central_auth
        self.clock = clock
        self.key_updates = KeyUpdates(
            node_name=config.node_name,
            central_name=config.central_node_name,
            own_key=self.key.public,
            trust=self.trust,
            central_key=lambda: self.key_for(self.central_node_name),
            authority=config.is_central_auth,
            enabled=config.enable_key_updates,
            interval=config.keys_update_interval,
            clock=clock,
            max_age=config.signature_max_age,
        )
        self._trust_problem: str | None = None
        self._told: set[tuple[str, bytes]] = set()

    # ------------------------------------------------------------------ keys

    @property
    def public_key(self) -> bytes:
        """This node's raw 32-byte public signing key."""
        return self.key.public

    @property
    def public_key_path(self) -> Path:
        """``<home>/etc/signing/public.key``."""
        return self.folder / "public.key"

    def key_for(self, node: str) -> bytes | None:
        """The public key allowed for messages signed by ``node`` here, or None.

        This node's own key for its own name; ``central_public_key`` (when configured) for
        the central node; otherwise the allowed key in keys.json.
        """
        if node == self.node_name:
            return self.key.public
        if self.central_key is not None and node == self.central_node_name:
            return self.central_key
        return self.trust.state.allowed.get(node)

    def _central_signed(self, message: Message) -> str | None:
        """None when ``message`` verifies with central's allowed key, where it arrived."""
        if self.key_for(self.central_node_name) is None:
            return (
                f"no key of {self.central_node_name} is allowed here (set central_public_key "
                "or allow it in etc/signing/keys.json)"
            )
        expected = Expected(self.node_name, message.method, self.clock(), self.max_age)
        refusal = check(message, self.key_for, expected)
        return None if refusal is None else refusal.reason

    def sign(self, message: Message) -> Message:
        """``message`` signed by this node now."""
        return sign(message, self.key.private, signer=self.node_name, now=self.clock())

    def sign_batch(self, batch: Sequence[list[Any]]) -> None:
        """Sign, as this node now, the messages whose field values are in ``batch``: as one
        batch (see :func:`~steward_otp.security.signing.sign_batch`), or each alone when
        ``signature_batches`` is off."""
        now = self.clock()
        if self.signature_batches:
            sign_batch(batch, self.key.private, signer=self.node_name, now=now)
            return
        for values in batch:
            sign_values(values, self.key.private, signer=self.node_name, now=now)

    def refresh_trust(self) -> None:
        """Pick up changes others made to keys.json (checked at most once a second).

        A damaged file keeps the last good keys in use; the problem is logged once.
        """
        try:
            changed = self.trust.refresh()
        except TrustError as exc:
            if str(exc) != self._trust_problem:
                self._trust_problem = str(exc)
                log.error("%s; the keys read before stay in use", exc)
            return
        self._trust_problem = None
        if changed:
            state = self.trust.state
            log.info(
                "%s changed: %d allowed, %d pending keys",
                self.trust.path,
                len(state.allowed),
                len(state.pending),
            )

    def verify_hook(self, *, node: str, method: str) -> VerifyHook:
        """The verify hook for the Subscriber of ``method`` on subject node ``node``: the
        signature check, then (with ``enable_acl_check``) the ACL check."""
        if method == KEYS_DELIVER_METHOD:
            # Its handler checks the signature itself, more strictly (signed by central, for
            # this node, in time), with trust on first contact for central's key.
            return _checked_by_handler
        signature = signature_hook(
            node=node,
            method=method,
            keys=self.key_for,
            max_age=self.max_age,
            clock=self.clock,
            before=self.refresh_trust,
        )
        if not self.acl.check:
            return signature
        acl = self.acl.hook(method)

        async def verify(message: Message) -> str | None:
            refusal = await signature(message)
            return refusal if refusal is not None else await acl(message)

        return verify

    # ------------------------------------------------------------------ key authority

    async def register_hello(self, ctx: HandlerContext, msg: Message) -> None:
        """On the key authority (``is_central_auth``): record the key a hello carries.

        The key is recorded only when the hello is signed by that very key as its
        ``fromNode``. A new or changed key becomes pending; an operator allows it.
        """
        if not self.central_auth:
            return
        node, key = msg.from_node, msg.data
        state = self.trust.state
        if state.allowed.get(node) == key or (
            node in state.pending and state.pending[node].key == key
        ):
            return
        problem = _hello_key_problem(msg)
        if problem is not None:
            self._warn_once(ctx, node, key, f"warning: {HELLO_METHOD}: {problem}")
            return
        outcome: list[HelloOutcome] = []

        def record(current: TrustState) -> TrustState:
            new, result = current.record_hello(node, key, self.clock())
            outcome.append(result)
            return new

        try:
            await trio.to_thread.run_sync(self.trust.update, record)
        except TrustError as exc:
            ctx.report("error", f"{HELLO_METHOD}: key of {node} not recorded: {exc}")
            return
        if outcome and outcome[0] is HelloOutcome.NEW:
            ctx.report(
                "info",
                f"info: detected new public key for node: {node}. This key will need to be "
                "authorized by operator to be allowed into the system (REQKeysAllow "
                f"[{node}], or the keys command; see docs/security.md)",
            )
        elif outcome and outcome[0] is HelloOutcome.CHANGED:
            ctx.report(
                "warning",
                f"warning: node {node} presents a public key different from its allowed one; "
                "the new key is pending: messages signed with it are refused until an "
                f"operator allows it (REQKeysAllow [{node}])",
            )

    def _warn_once(self, ctx: HandlerContext, node: str, key: bytes, text: str) -> None:
        """Report ``text`` the first time ``node`` presents ``key`` (hellos come every 30 s)."""
        if (node, key) not in self._told:
            self._told.add((node, key))
            ctx.report("warning", text)

    async def allow(self, nodes: Sequence[str]) -> TrustState:
        """Allow the pending keys of ``nodes`` (all or none); raises TrustError."""
        return await trio.to_thread.run_sync(self.trust.update, lambda s: s.allow(nodes))

    async def delete(self, nodes: Sequence[str]) -> TrustState:
        """Delete the allowed and pending keys of ``nodes``; raises TrustError."""
        return await trio.to_thread.run_sync(self.trust.update, lambda s: s.delete(nodes))

    # ------------------------------------------------------------------ posture

    def posture(self) -> dict[str, Any]:
        """What this node checks and trusts (for status output and logs)."""
        state = self.trust.state
        return {
            "signature_check": self.signature_check,
            "signature_max_age": self.max_age,
            "public_key": self.key.public_text,
            "keys_file": str(self.trust.path),
            "allowed": sorted(state.allowed),
            "pending": sorted(state.pending),
            "central_public_key": "configured" if self.central_key is not None else "",
            "key_authority": self.central_auth,
            **self.acl.posture(),
        }

    def startup_messages(self, served: Iterable[str]) -> list[tuple[int, str]]:
        """Log lines (level, text) describing the security posture at start."""
        lines: list[tuple[int, str]] = []
        if self.key_created:
            lines.append((logging.INFO, f"created a new signing key pair in {self.folder}"))
        lines.append(
            (logging.INFO, f"signing public key {self.key.public_text} ({self.public_key_path})")
        )
        lines.extend(self.acl.startup_messages())
        executing = [m for m in served if m != HELLO_METHOD]
        if not self.signature_check:
            if executing:
                shown = ", ".join(executing[:6]) + (
                    f" and {len(executing) - 6} more methods" if len(executing) > 6 else ""
                )
                lines.append(
                    (logging.WARNING, UNCHECKED_WARNING.format(node=self.node_name, methods=shown))
                )
            return lines
        trusted = set(self.trust.state.allowed) - {self.node_name}
        if self.central_key is not None:
            trusted.add(self.central_node_name)
            stored = self.trust.state.allowed.get(self.central_node_name)
            if stored is not None and stored != self.central_key:
                lines.append(
                    (
                        logging.WARNING,
                        f"{self.trust.path} allows another key for {self.central_node_name} "
                        "than central_public_key; the configured central_public_key is used",
                    )
                )
        if self.node_name == self.central_node_name and self.central_key not in (
            None,
            self.key.public,
        ):
            lines.append(
                (
                    logging.WARNING,
                    "central_public_key is not this node's own key, yet this node is "
                    f"{self.central_node_name}; messages it signs verify with its own key",
                )
            )
        if not trusted:
            lines.append(
                (
                    logging.WARNING,
                    "signature checking is on but no other node's key is allowed: only "
                    "messages this node signed itself will run (see docs/security.md)",
                )
            )
        else:
            lines.append(
                (
                    logging.INFO,
                    f"signature checking is on; keys allowed for: {', '.join(sorted(trusted))}",
                )
            )
        return lines


async def _checked_by_handler(message: Message) -> str | None:
    """The verify hook of a method whose handler does its own signature check."""
    return None


def _hello_key_problem(msg: Message) -> str | None:
    """Why the key a hello carries must not be recorded, or None."""
    if len(msg.data) != 32:
        return (
            f"hello from {msg.from_node} carries no public key (data holds {len(msg.data)} "
            "bytes, not 32): nothing recorded"
        )
    try:
        signer = Signature.parse(msg.arg_signature).signer
    except SignatureFormatError as exc:
        return f"key of {msg.from_node} not recorded: {exc}"
    if signer != msg.from_node or not verifies_with(msg, msg.data):
        return (
            f"key of {msg.from_node} not recorded: the hello is not signed by {msg.from_node} "
            "with the key it carries"
        )
    return None
