"""Key methods: REQPublicKey on every node; REQKeysAllow and REQKeysDelete on the key
authority (``is_central_auth``).

Built per node by :func:`key_handlers` around the node's security object (its key and trust
store). Key distribution from central to the nodes (REQKeysRequestUpdate and
REQKeysDeliverUpdate) is not available yet; see docs/security.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from steward_otp.handlers.base import Handler, HandlerContext, HandlerError, handler
from steward_otp.message import Message

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

    @handler("REQPublicKey", quick=True, description="reply with this node's 32-byte public key")
    async def public_key(ctx: HandlerContext, msg: Message) -> bytes | None:
        return security.public_key

    @handler("REQKeysAllow", description="allow the pending public keys of nodes", args="[node...]")
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
        return f"allowed public keys for the nodes=[{' '.join(nodes)}]\n".encode()

    @handler("REQKeysDelete", description="delete the public keys of nodes", args="[node...]")
    async def keys_delete(ctx: HandlerContext, msg: Message) -> bytes | None:
        nodes = _authority(security, "REQKeysDelete", msg)
        try:
            await security.delete(nodes)
        except ValueError as exc:
            raise HandlerError(f"REQKeysDelete: {exc}") from exc
        return f"deleted public keys for the nodes=[{' '.join(nodes)}]\n".encode()

    return (public_key, keys_allow, keys_delete)
