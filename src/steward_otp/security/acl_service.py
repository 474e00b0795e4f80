"""A node's ACLs: the ACL in use, the check hook, central's store and the update timer.

* Every node keeps the ACL it received from central in ``<home>/etc/acl/node.json`` and,
  with ``enable_acl_updates``, asks central for it every ``acl_update_interval`` seconds
  (REQAclRequestUpdate carrying its hash; central answers with REQAclDeliverUpdate only
  when the node's ACL changed).
* The key authority (``is_central_auth``) keeps the editable ACL in
  ``<home>/etc/acl/central.json`` and uses the ACL it generates for itself directly.
* With ``enable_acl_check`` the hook from :meth:`AclService.hook` runs after the signature
  check on every message (``NodeSecurity.verify_hook``) and answers with
  :func:`steward_otp.security.acl.decide`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

import trio

from steward_otp.config import Config
from steward_otp.inbound.verify import VerifyHook
from steward_otp.message import Message
from steward_otp.methods import method_base_name
from steward_otp.security.acl import ALL, AclError, NodeAcl, decide
from steward_otp.security.acl_store import CentralAclStore, NodeAclStore, acl_dir
from steward_otp.security.central_acl import CentralAcl
from steward_otp.security.signing import Signature, SignatureFormatError
from steward_otp.timers import Outbox, submit_every

__all__ = [
    "ACL_REQUEST_DIRECTORY",
    "ACL_REQUEST_FILE",
    "AclService",
    "acl_request_message",
    "signer_of",
]

log = logging.getLogger(__name__)

ACL_REQUEST_DIRECTORY: Final = "aclRequestUpdate"
ACL_REQUEST_FILE: Final = "aclRequestUpdate.log"
PUSH_ACK_TIMEOUT: Final = 10
PUSH_RETRIES: Final = 3
"""A pushed ACL tries for about half a minute; a node that misses it still gets the change
at its next request (every ``acl_update_interval`` seconds)."""


def signer_of(message: Message) -> str:
    """The node that signed ``message`` (its ``fromNode`` when it carries no steward-otp
    signature: only possible on a node that does not check signatures)."""
    try:
        return Signature.parse(message.arg_signature).signer
    except SignatureFormatError:
        return message.from_node


def acl_request_message(node: str, central: str, acl_hash: bytes, *, ack_timeout: int) -> Message:
    """The request for this node's ACL (Steward 8.5: data = the hash of the ACL it has)."""
    return Message(
        to_node=central,
        from_node=node,
        method="REQAclRequestUpdate",
        data=acl_hash,
        reply_method="REQAclDeliverUpdate",
        directory=ACL_REQUEST_DIRECTORY,
        file_name=ACL_REQUEST_FILE,
        ack_timeout=ack_timeout,
        retries=1,
        reply_ack_timeout=ack_timeout,
        reply_retries=1,
    )


class AclService:
    """The ACL side of one node's security (``Node.security.acl``).

    ``verify_delivery`` tells whether an ACL delivery is signed by central's allowed key
    (None) or why not; it is applied whether or not the node checks signatures, so that no
    one but central ever places the ACL a node would enforce.
    Raises :class:`~steward_otp.security.acl.AclError` when an ACL file cannot be read.
    """

    def __init__(self, config: Config, *, verify_delivery: Callable[[Message], str | None]) -> None:
        self.verify_delivery = verify_delivery
        self.folder = acl_dir(config.etc_dir)
        self.node_name = config.node_name
        self.central_node_name = config.central_node_name
        self.check = config.enable_acl_check
        self.updates = config.enable_acl_updates
        self.interval = config.acl_update_interval
        self.node_store = NodeAclStore(self.folder)
        self._central_problem: str | None = None
        self._own: tuple[CentralAcl, NodeAcl] | None = None
        self.central: CentralAclStore | None = (
            CentralAclStore(self.folder) if config.is_central_auth else None
        )

    @property
    def asks_central(self) -> bool:
        """Whether this node runs the ACL update timer: ``enable_acl_updates``, unless it is
        the authority itself (it uses its own store)."""
        return self.updates and not (
            self.central is not None and self.node_name == self.central_node_name
        )

    # ------------------------------------------------------------------ the check

    def current(self) -> NodeAcl | None:
        """The ACL this node enforces: generated from central's store on the authority,
        otherwise the one received last (None: none received yet)."""
        if self.central is not None:
            state = self.authority().state
            if self._own is None or self._own[0] is not state:
                self._own = (state, state.acl_for(self.node_name))  # once per change
            return self._own[1]
        return self.node_store.acl

    def refusal(self, message: Message, method: str) -> str | None:
        """None when the ACL lets ``message`` run as ``method`` here, else why not."""
        reason = decide(
            self.current(),
            node=self.node_name,
            source=signer_of(message),
            method=method_base_name(method),
            method_args=message.method_args,
        )
        if reason is None:
            return None
        return f"acl check: message {message.id} from {message.from_node}: {reason}"

    def hook(self, method: str) -> VerifyHook:
        """The verify hook of the Subscriber serving ``method``."""

        async def verify(message: Message) -> str | None:
            return self.refusal(message, method)

        return verify

    # ------------------------------------------------------------------ central

    def authority(self) -> CentralAclStore:
        """Central's store, with the changes others made to its file; raises AclError when
        this node is not the key authority."""
        if self.central is None:
            raise AclError(
                f"{self.node_name} is not the ACL authority (is_central_auth = false); send "
                f"it to the central node ({self.central_node_name})"
            )
        try:
            if self.central.refresh():
                log.info("%s changed: version %d", self.central.path, self.central.state.version)
        except AclError as exc:
            if str(exc) != self._central_problem:
                self._central_problem = str(exc)
                log.error("%s; the ACL read before stays in use", exc)
        else:
            self._central_problem = None
        return self.central

    async def edit(
        self, change: Callable[[CentralAcl], CentralAcl], *, push_to: Iterable[str] = ()
    ) -> tuple[bool, list[Message]]:
        """Apply ``change`` to central's ACL, persisted. Returns whether something changed,
        and the pushes of the new ACL (REQAclDeliverUpdate) to every node whose ACL changed:
        the nodes its rules name, and ``push_to`` (the nodes a ``*`` rule reaches, e.g. those
        with an allowed key) when one of the two versions has a ``*`` rule."""
        store = self.authority()
        before = store.state
        after = await trio.to_thread.run_sync(store.update, change)
        if after.version == before.version:
            return False, []
        nodes = set(before.named_hosts() | after.named_hosts())
        if ALL in before.rules or ALL in after.rules:
            nodes |= set(push_to)
        nodes.discard(self.node_name)  # central uses its own store directly
        pushes = []
        for node in sorted(nodes):
            acl = after.acl_for(node)
            if acl.hash == before.acl_for(node).hash:
                continue
            pushes.append(
                Message(
                    to_node=node,
                    from_node=self.node_name,
                    method="REQAclDeliverUpdate",
                    data=acl.to_json(after.version).encode(),
                    directory=ACL_REQUEST_DIRECTORY,
                    file_name=ACL_REQUEST_FILE,
                    ack_timeout=PUSH_ACK_TIMEOUT,
                    retries=PUSH_RETRIES,
                    reply_method="REQNone",
                )
            )
        return True, pushes

    def answer_request(self, node: str, their_hash: bytes) -> bytes | None:
        """Central's answer to ``node`` asking with ``their_hash``: the ACL document, or
        None when the node has it already."""
        store = self.authority()
        acl = store.state.acl_for(node)
        if acl.hash == their_hash:
            return None
        return acl.to_json(store.state.version).encode()

    # ------------------------------------------------------------------ node

    def delivered_by_central(self, message: Message) -> str | None:
        """None when ``message`` (an ACL delivery) was signed by central, else why not."""
        signer = signer_of(message)
        if signer != self.central_node_name:
            return (
                f"an ACL from {signer!r} is refused: only the central node "
                f"({self.central_node_name}) delivers ACLs"
            )
        problem = self.verify_delivery(message)
        if problem is not None:
            return f"an ACL from {signer!r} is refused: {problem}"
        return None

    async def adopt(self, document: bytes) -> tuple[NodeAcl, int] | None:
        """Use and store the ACL in ``document``; None when it is the one in use.

        Raises AclError for a damaged document or one made for another node.
        """
        acl, version = NodeAcl.from_json(document, source="REQAclDeliverUpdate data")
        if acl.node != self.node_name:
            raise AclError(f"the ACL is for node {acl.node!r}, not for {self.node_name}")
        if self.node_store.acl == acl and self.node_store.version == version:
            return None
        await trio.to_thread.run_sync(self.node_store.save, acl, version)
        log.info(
            "node %s: ACL %s (version %d) from %s in use: %d sources",
            self.node_name,
            acl.hash.hex()[:12],
            version,
            self.central_node_name,
            len(acl.sources),
        )
        return acl, version

    async def update_loop(
        self,
        node: Outbox,
        *,
        ack_timeout: int,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Ask central for this node's ACL now and every ``acl_update_interval`` seconds."""
        await submit_every(
            node,
            self.interval,
            lambda: acl_request_message(
                self.node_name,
                self.central_node_name,
                self.node_store.hash,
                ack_timeout=ack_timeout,
            ),
            task_status=task_status,
        )

    # ------------------------------------------------------------------ posture

    def posture(self) -> dict[str, Any]:
        """What the ACL side does here (for ``steward-otp status``)."""
        acl = self.current()
        result: dict[str, Any] = {
            "acl_check": self.check,
            "acl_updates": self.updates,
            "acl_update_interval": self.interval,
            "acl_hash": "" if acl is None else acl.hash.hex(),
            "acl_sources": [] if acl is None else sorted(acl.sources),
            "acl_authority": self.central is not None,
        }
        if self.central is not None:
            result["acl_version"] = self.central.state.version
        else:
            result["acl_version"] = self.node_store.version if acl is not None else None
        return result

    def startup_messages(self) -> list[tuple[int, str]]:
        """Log lines (level, text) about the ACL at start."""
        lines: list[tuple[int, str]] = []
        if not self.check:
            return lines
        acl = self.current()
        if acl is None:
            how = (
                f"it asks {self.central_node_name} for one every {self.interval:g} s"
                if self.updates
                else "enable_acl_updates is off: place one in etc/acl/node.json or turn it on"
            )
            lines.append(
                (
                    logging.WARNING,
                    f"ACL checking is on but this node has no ACL yet: only its own messages "
                    f"run until one arrives; {how}",
                )
            )
        else:
            lines.append(
                (
                    logging.INFO,
                    f"ACL checking is on; ACL {acl.hash.hex()[:12]} allows sources: "
                    f"{', '.join(sorted(acl.sources)) or 'none'}",
                )
            )
        return lines
