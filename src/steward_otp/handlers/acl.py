"""ACL methods (Steward spec 8.5).

On the key authority (``is_central_auth``): the eleven edit and export methods, and
REQAclRequestUpdate, which answers a node's request with its ACL when the node's hash
differs. On every node: REQAclDeliverUpdate, which takes the ACL central delivers (only from
central). Built per node by :func:`acl_handlers` around its
:class:`~steward_otp.security.acl_service.AclService`.

Every argument is checked, and a bad one is answered with an error reply naming it
(``error: REQAclAddCommand: field "methodArgs[0]" (host): ...``). The edits are persisted
before the reply; the reply texts are Steward's, plus a note when nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from steward_otp.handlers.base import Handler, HandlerContext, HandlerError, handler
from steward_otp.message import Message
from steward_otp.security.acl import (
    COMMAND_GROUP_PREFIX,
    NODE_GROUP_PREFIX,
    AclError,
    check_command,
    check_group,
    check_host,
)
from steward_otp.security.acl_service import AclService
from steward_otp.security.central_acl import CentralAcl

__all__ = ["ACL_METHODS", "acl_handlers"]

ACL_METHODS = (
    "REQAclRequestUpdate",
    "REQAclDeliverUpdate",
    "REQAclAddCommand",
    "REQAclDeleteCommand",
    "REQAclDeleteSource",
    "REQAclGroupNodesAddNode",
    "REQAclGroupNodesDeleteNode",
    "REQAclGroupNodesDeleteGroup",
    "REQAclGroupCommandsAddCommand",
    "REQAclGroupCommandsDeleteCommand",
    "REQAclGroupCommandsDeleteGroup",
    "REQAclExport",
    "REQAclImport",
)
"""Steward's thirteen ACL methods."""

HASH_BYTES = 32
UNCHANGED = " (nothing changed: no such entry)"

Check = Callable[[str, str], None]


def _host(value: str, what: str) -> None:
    check_host(value, what)


def _command(value: str, what: str) -> None:
    check_command(value, what)


def _node_group(value: str, what: str) -> None:
    check_group(value, NODE_GROUP_PREFIX, what)


def _command_group(value: str, what: str) -> None:
    check_group(value, COMMAND_GROUP_PREFIX, what)


def _node(value: str, what: str) -> None:
    check_host(value, what)
    if value == "*" or value.startswith(NODE_GROUP_PREFIX):
        raise AclError(f"{what}: {value!r}: a group holds node names, not '*' or groups")


def arguments(msg: Message, spec: Sequence[tuple[str, Check]]) -> list[str]:
    """``msg``'s methodArgs, exactly one per entry of ``spec`` (name, check); raises
    HandlerError naming the argument that is missing, extra or wrong."""
    args = list(msg.method_args)
    names = ", ".join(name for name, _ in spec)
    if len(args) != len(spec):
        problem = (
            f"{spec[len(args)][0]} is missing"
            if len(args) < len(spec)
            else f"{len(args) - len(spec)} more than needed (a command with spaces is one "
            'argument: "echo hello")'
        )
        raise HandlerError(f'field "methodArgs": expected [{names}], got {args!r}: {problem}')
    for index, ((name, check), value) in enumerate(zip(spec, args, strict=True)):
        try:
            check(value, f'field "methodArgs[{index}]" ({name})')
        except AclError as exc:
            raise HandlerError(str(exc)) from None
    return args


def acl_handlers(
    acl: AclService, known_nodes: Callable[[], Iterable[str]] = tuple
) -> tuple[Handler, ...]:
    """The ACL method handlers of one node. ``known_nodes`` names the nodes a ``*`` rule
    reaches (for pushing a changed ACL to them)."""

    async def edit(ctx: HandlerContext, change: Callable[[CentralAcl], CentralAcl]) -> bool:
        """Apply an edit, then push the new ACL to every node whose ACL it changed."""
        try:
            changed, pushes = await acl.edit(change, push_to=known_nodes())
        except AclError as exc:
            raise HandlerError(str(exc)) from None
        if pushes:
            await ctx.services.submit(pushes)
        return changed

    def authority() -> None:
        try:
            acl.authority()
        except AclError as exc:
            raise HandlerError(str(exc)) from None

    @handler("REQAclRequestUpdate")
    async def request_update(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        if len(msg.data) != HASH_BYTES:
            raise HandlerError(
                f'field "data": expected the {HASH_BYTES}-byte hash of '
                f"the ACL {msg.from_node} has, got {len(msg.data)} bytes"
            )
        return acl.answer_request(msg.from_node, msg.data)

    @handler("REQAclDeliverUpdate")
    async def deliver_update(ctx: HandlerContext, msg: Message) -> bytes | None:
        problem = acl.delivered_by_central(msg)
        if problem is not None:
            raise HandlerError(problem)
        if msg.file_name.endswith(".error"):  # central answered the request with an error
            ctx.report(
                "error",
                f"error: ACL update from {msg.from_node} failed: "
                f"{msg.data.decode(errors='replace').strip()}",
            )
            return None
        try:
            await acl.adopt(msg.data)
        except AclError as exc:
            raise HandlerError(str(exc)) from None
        return None

    @handler("REQAclAddCommand")
    async def add_command(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        host, source, command = arguments(
            msg, [("host", _host), ("source", _host), ("command", _command)]
        )
        await edit(ctx, lambda s: s.add_command(host, source, command))
        return f"acl added: host={host}, source={source}, command={command}\n".encode()

    @handler("REQAclDeleteCommand")
    async def delete_command(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        host, source, command = arguments(
            msg, [("host", _host), ("source", _host), ("command", _command)]
        )
        changed = await edit(ctx, lambda s: s.delete_command(host, source, command))
        note = "" if changed else UNCHANGED
        return f"acl deleted: host={host}, source={source}, command={command}{note}\n".encode()

    @handler("REQAclDeleteSource")
    async def delete_source(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        host, source = arguments(msg, [("host", _host), ("source", _host)])
        changed = await edit(ctx, lambda s: s.delete_source(host, source))
        note = "" if changed else UNCHANGED
        return f"acl deleted: host={host}, source={source}{note}\n".encode()

    @handler("REQAclGroupNodesAddNode")
    async def group_nodes_add(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        group, node = arguments(msg, [("nodeGroup", _node_group), ("node", _node)])
        await edit(ctx, lambda s: s.group_nodes_add(group, node))
        return f"added node to nodeGroup: nodeGroup={group}, node={node}\n".encode()

    @handler("REQAclGroupNodesDeleteNode")
    async def group_nodes_delete_node(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        group, node = arguments(msg, [("nodeGroup", _node_group), ("node", _node)])
        changed = await edit(ctx, lambda s: s.group_nodes_delete_node(group, node))
        note = "" if changed else UNCHANGED
        return f"deleted node from nodeGroup: nodeGroup={group}, node={node}{note}\n".encode()

    @handler("REQAclGroupNodesDeleteGroup")
    async def group_nodes_delete_group(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        (group,) = arguments(msg, [("nodeGroup", _node_group)])
        changed = await edit(ctx, lambda s: s.group_nodes_delete_group(group))
        note = "" if changed else UNCHANGED
        return f"deleted nodeGroup: nodeGroup={group}{note}\n".encode()

    @handler("REQAclGroupCommandsAddCommand")
    async def group_commands_add(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        group, command = arguments(msg, [("commandGroup", _command_group), ("command", _command)])
        await edit(ctx, lambda s: s.group_commands_add(group, command))
        return f"added command to commandGroup: commandGroup={group}, command={command}\n".encode()

    @handler("REQAclGroupCommandsDeleteCommand")
    async def group_commands_delete_command(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        group, command = arguments(msg, [("commandGroup", _command_group), ("command", _command)])
        changed = await edit(ctx, lambda s: s.group_commands_delete_command(group, command))
        note = "" if changed else UNCHANGED
        return (
            f"deleted command from commandGroup: commandGroup={group}, command={command}"
            f"{note}\n".encode()
        )

    @handler("REQAclGroupCommandsDeleteGroup")
    async def group_commands_delete_group(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        (group,) = arguments(msg, [("commandGroup", _command_group)])
        changed = await edit(ctx, lambda s: s.group_commands_delete_group(group))
        note = "" if changed else UNCHANGED
        return f"deleted commandGroup: commandGroup={group}{note}\n".encode()

    @handler("REQAclExport")
    async def export(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        if msg.method_args:
            raise HandlerError(
                f'field "methodArgs": takes no arguments, got {list(msg.method_args)!r}'
            )
        return acl.authority().state.to_json().encode()

    @handler("REQAclImport")
    async def import_(ctx: HandlerContext, msg: Message) -> bytes | None:
        authority()
        if len(msg.method_args) != 1:
            raise HandlerError(
                f'field "methodArgs": expected [aclJSON] (one JSON document, as '
                f"REQAclExport replies), got {len(msg.method_args)} values"
            )
        try:
            imported = CentralAcl.from_json(msg.method_args[0], source='field "methodArgs[0]"')
        except AclError as exc:
            raise HandlerError(str(exc)) from None
        await edit(ctx, lambda s: s.replace(imported))
        return f"Imported acl's sent from: {msg.from_node}\n".encode()

    return (
        request_update,
        deliver_update,
        add_command,
        delete_command,
        delete_source,
        group_nodes_add,
        group_nodes_delete_node,
        group_nodes_delete_group,
        group_commands_add,
        group_commands_delete_command,
        group_commands_delete_group,
        export,
        import_,
    )
