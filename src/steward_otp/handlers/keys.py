"""Key methods: REQPublicKey and REQKeysDeliverUpdate on every node; REQKeysAllow,
REQKeysDelete and REQKeysRequestUpdate on the key authority (``is_central_auth``).

Built per node by :func:`key_handlers` around the node's security object (its key, trust
store and :class:`~steward_otp.security.key_updates.KeyUpdates`). Key distribution is
described in :mod:`steward_otp.security.key_updates` and docs/security.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from steward_otp.handlers.base import Handler, HandlerContext, HandlerError, handler
from steward_otp.message import Message
from steward_otp.security.key_updates import EMPTY_HASH, KeyUpdateError, KeyUpdates

__all__ = ["KeyAuthority", "key_handlers"]


class KeyAuthority(Protocol):
    """What the key methods need from a node (``steward_otp.security.NodeSecurity``)."""

    @property
    def public_key(self) -> bytes:
        """The node's raw 32-byte public signing key."""
        ...

    @property
    def central_auth(self) -> bool:
        """Whether this node is the key authority."""
        ...

    async def allow(self, nodes: Sequence[str]) -> object:
        """Allow the pending keys of ``nodes``; raises ``ValueError`` saying why not."""
        ...

    async def delete(self, nodes: Sequence[str]) -> object:
        """Delete the keys of ``nodes``; raises ``ValueError`` saying why not."""
        ...

    @property
    def key_updates(self) -> KeyUpdates:
        """Key distribution (both sides)."""
        ...


_PUSH_ACK_TIMEOUT = 10


async def _push(ctx: HandlerContext, security: KeyAuthority) -> None:
    """After a change on central: the new keys to every node it allows."""
    await ctx.services.submit(security.key_updates.push_messages(ack_timeout=_PUSH_ACK_TIMEOUT))


def _authority(security: KeyAuthority, method: str, msg: Message) -> list[str]:
    if not security.central_auth:
        raise HandlerError(
            f"{method}: this node is not the key authority (is_central_auth = false); send "
            "it to the central node"
        )
    nodes = [arg for arg in msg.method_args if arg]
    if not nodes:
        raise HandlerError(f'{method}: field "methodArgs": name at least one node')
    return nodes


def key_handlers(security: KeyAuthority) -> tuple[Handler, ...]:
    """The key method handlers of one node."""

    @handler("REQPublicKey")
    async def public_key(ctx: HandlerContext, msg: Message) -> bytes | None:
        return security.public_key

    @handler("REQKeysAllow")
    async def keys_allow(ctx: HandlerContext, msg: Message) -> bytes | None:
        nodes = _authority(security, "REQKeysAllow", msg)
        try:
            await security.allow(nodes)
        except ValueError as exc:  # TrustError: the text says which node and why
            raise HandlerError(f"REQKeysAllow: {exc}") from exc
        for node in nodes:
            ctx.report(
                "info",
                f"info: REQKeysAllow : allowed new/updated public key for {node} to allowed "
                "public key map",
            )
        await _push(ctx, security)
        return f"allowed public keys for the nodes=[{' '.join(nodes)}]\n".encode()

    @handler("REQKeysDelete")
    async def keys_delete(ctx: HandlerContext, msg: Message) -> bytes | None:
        nodes = _authority(security, "REQKeysDelete", msg)
        try:
            await security.delete(nodes)
        except ValueError as exc:
            raise HandlerError(f"REQKeysDelete: {exc}") from exc
        await _push(ctx, security)
        return f"deleted public keys for the nodes=[{' '.join(nodes)}]\n".encode()

    @handler("REQKeysRequestUpdate")
    async def keys_request_update(ctx: HandlerContext, msg: Message) -> bytes | None:
        if len(msg.data) != len(EMPTY_HASH):
            raise HandlerError(
                f'REQKeysRequestUpdate: field "data": expected the {len(EMPTY_HASH)}-byte hash '
                f"of the keys {msg.from_node} holds, got {len(msg.data)} bytes"
            )
        try:
            return security.key_updates.answer_request(msg.data)
        except KeyUpdateError as exc:
            raise HandlerError(f"REQKeysRequestUpdate: {exc}") from None

    @handler("REQKeysDeliverUpdate")
    async def keys_deliver_update(ctx: HandlerContext, msg: Message) -> bytes | None:
        if msg.file_name.endswith(".error"):  # central answered the request with an error
            ctx.report(
                "error",
                f"error: key update from {msg.from_node} failed: "
                f"{msg.data.decode(errors='replace').strip()}",
            )
            return None
        try:
            count, first_contact = await security.key_updates.adopt(msg)
        except KeyUpdateError as exc:
            raise HandlerError(f"REQKeysDeliverUpdate: {exc}") from None
        if first_contact:
            ctx.report(
                "warning",
                f"warning: trusted the key of {msg.from_node} on first contact",
            )
        ctx.report("info", f"info: REQKeysDeliverUpdate: {count} allowed keys from {msg.from_node}")
        return None

    return (
        public_key,
        keys_allow,
        keys_delete,
        keys_request_update,
        keys_deliver_update,
    )
