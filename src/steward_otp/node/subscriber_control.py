"""Starting and stopping a node's subscribers: what the ``REQOpProcess*`` handlers act on.

:class:`SubscriberProcesses` implements
:class:`~steward_otp.handlers.base.SubscriberControl` over a node's ``inbound``
supervisor. The node builds one and gives it to the ``REQOpProcess*`` handlers only
(:func:`~steward_otp.handlers.process.process_handlers`); no other handler can reach it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from steward_otp.config import Config
from steward_otp.error_kernel import ERROR_CENTRAL_NODE, ERROR_LOG_METHOD
from steward_otp.handlers.base import Handler, HandlerError, HandlerTable
from steward_otp.inbound.subscriber import Subscriber
from steward_otp.message import subject_for_node
from steward_otp.methods import MethodTable
from steward_otp.supervisors import (
    ChildSpec,
    ChildStartError,
    DuplicateChild,
    ProcessSnapshot,
    Supervisor,
    UnknownChild,
)
from steward_otp.tree_view import render_tree

PROCESS_CONTROL_PREFIX = "REQOpProcess"
"""Subscribers REQOpProcessStop refuses to stop: without them the node is out of reach."""


class SubscriberHost(Protocol):
    """What :class:`SubscriberProcesses` needs of its node (read when a request comes, so
    the node may build it before its handler table and tree)."""

    @property
    def node_name(self) -> str: ...

    @property
    def config(self) -> Config: ...

    @property
    def handlers(self) -> HandlerTable: ...

    @property
    def table(self) -> MethodTable: ...

    @property
    def inbound_supervisor(self) -> Supervisor: ...

    def snapshot(self) -> ProcessSnapshot: ...


class SubscriberProcesses:
    """A node's subscribers under its ``inbound`` supervisor, as the ``REQOpProcess*``
    handlers list, start and stop them. ``subscriber(handler, node)`` builds the Subscriber
    that serves ``handler`` on subject node ``node``, as the node does at start."""

    def __init__(
        self, node: SubscriberHost, subscriber: Callable[[Handler, str], Subscriber]
    ) -> None:
        self._node = node
        self._subscriber = subscriber

    def process_list(self) -> str:
        """The live supervision tree as text (``steward-otp tree``'s table), newline-ended."""
        return render_tree(self._node.snapshot().to_dict()) + "\n"

    async def start_subscriber(self, method: str) -> str:
        """Start a subscriber for ``method`` under ``inbound``; returns a status line.

        It lasts until it is stopped or the ``inbound`` supervisor restarts (then the start
        flags of the configuration decide again). ``REQErrorLog`` on the central error
        logger listens as ``errorCentral``, as it does at start. Raises HandlerError when
        this node has no handler for ``method`` or its subscriber runs already.
        """
        node_name = self._node.node_name
        handlers = self._node.handlers
        found = handlers.get(method)
        if found is None:
            raise HandlerError(
                f'OpProcessStart: field "methodArgs[0]": value {method!r} is not a method this '
                f"node has a handler for; allowed: {', '.join(handlers.names())}"
            )
        # The central error log listens as errorCentral, as at start.
        central_log = method == ERROR_LOG_METHOD and self._node.config.acts_as_central_error_logger
        node = ERROR_CENTRAL_NODE if central_log else node_name
        child_id = f"{ERROR_CENTRAL_NODE}.{method}" if central_log else method
        subscriber = self._subscriber(found, node)
        inbound = self._node.inbound_supervisor
        try:
            await inbound.start_child(ChildSpec(child_id, subscriber.run))
        except DuplicateChild:
            raise HandlerError(
                f"OpProcessStart: a subscriber for {method} runs already on {node_name}"
            ) from None
        except ChildStartError as exc:
            raise HandlerError(f"OpProcessStart: {method} failed to start: {exc}") from exc
        return (
            f"info: OpProcessStart: started id: {inbound.path}/{child_id}, "
            f"subject: {subscriber.subject}: node: {node_name}\n"
        )

    async def stop_subscriber(self, method: str, node: str = "") -> str:
        """Stop the subscriber for ``method`` and forget it; returns a status line.

        ``node`` is the subject's node name (this node's by default; ``errorCentral`` for
        the central error log). The ``REQOpProcess*`` subscribers are refused, so the node
        stays controllable. Raises HandlerError when no such subscriber runs.
        """
        if method.startswith(PROCESS_CONTROL_PREFIX):
            raise HandlerError(
                f"OpProcessStop: {method} is not stopped: the {PROCESS_CONTROL_PREFIX}* "
                "subscribers keep the node controllable"
            )
        node_name = self._node.node_name
        inbound = self._node.inbound_supervisor
        child_id = method if node in ("", node_name) else f"{node}.{method}"
        spec = self._node.table.lookup(method)
        target = node or node_name
        subject = subject_for_node(target, spec) if spec else f"{target}.{method}"
        running = {c.id for c in inbound.which_children() if c.handle is not None}
        if child_id not in running:
            raise HandlerError(
                f"OpProcessStop: did not find process to stop: {subject} on {node_name}; "
                f"running subscribers: {', '.join(sorted(running))}"
            )
        await inbound.terminate_child(child_id)
        with contextlib.suppress(UnknownChild):
            await inbound.delete_child(child_id)
        return (
            f"info: OpProcessStop: process stopped id: {inbound.path}/{child_id}, "
            f"method: {subject} on: {node_name}\n"
        )


__all__ = ["PROCESS_CONTROL_PREFIX", "SubscriberHost", "SubscriberProcesses"]
