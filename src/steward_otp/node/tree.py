"""The supervision tree of one node: the root supervisor and the children it starts.

::

    node                    rest_for_one   (root: escalation ends the daemon with status 1)
    ├── broker              embedded nats-server (only without --broker-address)
    ├── store               SQLite outbox, inbox dedupe, audit
    ├── bridge              the NATS connection
    ├── errors              error kernel -> central error log
    ├── outbound            one_for_all
    │   ├── acks            one ACK subscription, each Publisher's ACKs handed to it
    │   ├── publishers      DynamicSupervisor: one Publisher per (toNode, method)
    │   └── router          outbox -> publishers
    ├── copies              DynamicSupervisor: one process per copy received (copy id)
    ├── inbound             one_for_one: one Subscriber per method
    ├── inputs              one_for_one: unix socket, TCP, HTTP, read folder, startup
    ├── timers              one_for_one: hello, acl-update, keys-update (with their settings)
    ├── control             the control socket behind steward-otp tree/status/queue
    ├── metrics             /metrics for Prometheus (only with prom_host_and_port)
    ├── web                 the web view: fleet, trees, queue, send (only with web_listener)
    └── data_folder         the data folder, read-only over HTTP (only with expose_data_folder)

``rest_for_one`` at the root: when the bridge restarts, everything after it restarts too
(their subscriptions died with the connection); the store and broker are untouched.
``one_for_all`` under ``outbound``: the Router's record of what the Publishers hold dies
with it, and the Publishers' reply subjects with the ACK subscription. Each child that has
something to show publishes it in its entry of the tree snapshot (``steward-otp tree``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from steward_otp.control.server import ControlServer
from steward_otp.error_kernel import ERROR_CENTRAL_NODE, ERROR_LOG_METHOD
from steward_otp.handlers.base import Handler
from steward_otp.inbound.stream_intake import StreamIntake
from steward_otp.inbound.subscriber import Subscriber
from steward_otp.inputs.folders import ReadFolderInput, StartupFolderInput
from steward_otp.inputs.http import HttpInput
from steward_otp.inputs.intake import accept_document
from steward_otp.inputs.tcp import TcpInput
from steward_otp.inputs.unix_socket import UnixSocketInput
from steward_otp.jetstream import StreamLimits
from steward_otp.message import Message, subject_for_node
from steward_otp.metrics import MetricsServer
from steward_otp.outbound.ack_inboxes import AckInboxes
from steward_otp.outbound.publisher import Publisher
from steward_otp.outbound.router import Router
from steward_otp.security.verify import HELLO_METHOD, VerifyHook
from steward_otp.supervisors import (
    ChildSpec,
    DynamicSupervisor,
    Restart,
    Strategy,
    Supervisor,
    current_child,
)
from steward_otp.timers import hello_loop
from steward_otp.transport import live_info

if TYPE_CHECKING:
    from steward_otp.node.node import Node


def build_tree(node: Node) -> Supervisor:
    """The root supervisor of ``node`` and its children, in start order (see the drawing in
    the module docstring). Sets ``node.inbound_supervisor`` and, with JetStream delivery,
    ``node.stream_intake``."""
    children: list[ChildSpec] = []
    if node.broker is not None:
        broker = node.broker
        children.append(
            ChildSpec("broker", _with_info(broker.run, lambda: broker.info), shutdown=10.0)
        )
    bridge = node.bridge
    children += [
        ChildSpec(
            "store", _with_info(node.store.run, functools.partial(_store_info, node)), shutdown=30.0
        ),
        ChildSpec(
            "bridge",
            _with_info(bridge.run, functools.partial(live_info, bridge)),
            shutdown=5.0,
        ),
        ChildSpec("errors", _with_info(node.errors.run, lambda: node.errors.info)),
        _outbound(node).child_spec(),
        # Before inbound: the copy sessions outlive the handlers that hand them work.
        node.copy_sessions.child_spec(),
        _inbound(node).child_spec(),
        _inputs(node).child_spec(),
        _timers(node).child_spec(),
        ChildSpec("control", _control(node).run),
    ]
    if node.config.prom_host_and_port:
        server = MetricsServer(node.metrics, node.config.prom_host_and_port)
        children.append(ChildSpec("metrics", server.run))
    # The web view and the data-folder view load only when configured (the idle footprint).
    if node.config.web_listener:
        from steward_otp.web import WebServer, central_error_log  # noqa: PLC0415

        web = WebServer(
            node,
            node.config.web_listener,
            etc_dir=node.config.etc_dir,
            error_log=central_error_log(node.config.data_dir),
        )
        children.append(ChildSpec("web", web.run))
    if node.config.expose_data_folder:
        from steward_otp.data_folder_view import DataFolderView  # noqa: PLC0415

        view = DataFolderView(node.config.data_dir, node.config.expose_data_folder)
        children.append(ChildSpec("data_folder", _with_info(view.run, lambda: view.info)))
    return Supervisor("node", children, strategy=Strategy.REST_FOR_ONE, intensity=5, period=30.0)


def _store_info(node: Node) -> Mapping[str, object]:
    stats = node.store.stats()
    return {"path": str(node.store.path), "commits": stats.commits}


def _with_info(
    start: Callable[..., Awaitable[object]], info: Callable[[], Mapping[str, object]]
) -> Callable[..., Awaitable[object]]:
    """A start function that publishes ``info()`` in its snapshot entry, then runs ``start``."""

    async def run(
        *args: Any, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> object:
        current_child().info_provider = info
        return await start(*args, task_status=task_status)

    return run


def _outbound(node: Node) -> Supervisor:
    # A Publisher's handle says it is busy while it holds deliveries, so it is never
    # reaped with deliveries in flight, however short keep_publishers_alive_for is.
    acks = AckInboxes(node.bridge)
    publisher = Publisher(
        node.outbox,
        node.bridge,
        node.report,
        acks=acks,
        jetstream=node.config.delivery == "jetstream",
        limits=StreamLimits(
            max_age_seconds=node.config.jetstream_max_age_seconds,
            max_msgs_per_subject=node.config.jetstream_max_msgs_per_subject,
        ),
    )
    publishers = DynamicSupervisor(
        "publishers",
        ChildSpec("publisher", publisher.run, restart=Restart.TRANSIENT),
        intensity=10,
        period=10.0,
        idle_timeout=node.config.keep_publishers_alive_for,
    )
    router = Router(node.outbox, publishers, report=node.report)
    return Supervisor(
        "outbound",
        [
            ChildSpec("acks", _with_info(acks.run, acks.info)),
            publishers.child_spec(),
            ChildSpec("router", router.run),
        ],
        # one_for_all: the Router's record of what the Publishers hold dies with it, and
        # the Publishers' reply subjects with the ACK subscription, so they restart
        # together and start from the store.
        strategy=Strategy.ONE_FOR_ALL,
        intensity=5,
        period=10.0,
    )


def subscriber_for(node: Node, handler: Handler, subject_node: str) -> Subscriber:
    """The Subscriber serving ``handler`` of ``node`` on subject node ``subject_node`` (the
    node's name, or ``errorCentral`` for the central error log)."""
    hooks: list[VerifyHook] = []
    if node.config.enable_signature_check:
        hooks.append(node.security.verify_hook(node=subject_node, method=handler.name))
    return Subscriber(
        handler,
        subject_for_node(subject_node, handler.method),
        bridge=node.bridge,
        store=node.store,
        outbox=node.outbox,
        services=node.handler_services,
        default_method_timeout=node.config.default_method_timeout,
        verify_hooks=hooks,
        on_finished=node.reply_hub.finished,
    )


def _inbound(node: Node) -> Supervisor:
    children: list[ChildSpec] = []
    for h in node.handlers:
        if h.name == ERROR_LOG_METHOD:
            continue
        if h.name in node.disabled_methods:
            continue
        children.append(ChildSpec(h.name, subscriber_for(node, h, node.node_name).run))
    error_log = node.handlers.get(ERROR_LOG_METHOD)
    if error_log is not None and node.config.acts_as_central_error_logger:
        subscriber = subscriber_for(node, error_log, ERROR_CENTRAL_NODE)
        children.append(ChildSpec(f"{ERROR_CENTRAL_NODE}.{ERROR_LOG_METHOD}", subscriber.run))
    if node.config.delivery == "jetstream":
        children.append(ChildSpec("stream", _stream_intake(node).run))
    node.inbound_supervisor = Supervisor("inbound", children, intensity=10, period=10.0)
    return node.inbound_supervisor


def _stream_intake(node: Node) -> StreamIntake:
    """The JetStream consumer; its messages run on the Subscribers of their methods."""
    subscribers: dict[str, Subscriber] = {}

    def serving() -> dict[str, Subscriber]:
        # A Subscriber object per method, with the tree's handlers, built on first use.
        for name in node.served_methods():
            found = node.handlers.get(name)
            if name not in subscribers and found is not None and name != ERROR_LOG_METHOD:
                subscribers[name] = subscriber_for(node, found, node.node_name)
        return subscribers

    hooks: list[VerifyHook] = []
    if node.config.enable_signature_check:

        async def verify(message: Message) -> str | None:
            hook = node.security.verify_hook(node=node.node_name, method=message.method)
            return await hook(message)

        hooks.append(verify)
    limits = StreamLimits(
        max_age_seconds=node.config.jetstream_max_age_seconds,
        max_msgs_per_subject=node.config.jetstream_max_msgs_per_subject,
        ack_wait_seconds=node.config.jetstream_ack_wait_seconds,
    )
    node.stream_intake = StreamIntake(
        node.node_name,
        bridge=node.bridge,
        store=node.store,
        services=node.handler_services,
        subscribers=serving,
        limits=limits,
        verify_hooks=hooks,
    )
    return node.stream_intake


def _inputs(node: Node) -> Supervisor:
    config = node.config
    inputs: list[tuple[str, Any]] = []
    if config.enable_socket:
        inputs.append(("socket", UnixSocketInput(config.socket_path, node.accept_document)))
    if config.tcp_listener:
        tcp = TcpInput(config.tcp_listener, node.accept_document, node.report)
        inputs.append(("tcp", tcp))
    if config.http_listener:
        http = HttpInput(config.http_listener, node.accept_document, node.report)
        inputs.append(("http", http))
    if config.enable_read_folder:
        read_folder = ReadFolderInput(config.readfolder_dir, node.accept_document, node.report)
        inputs.append(("readfolder", read_folder))
    # Startup messages keep their fromNode (required): replies go where they name.
    accept_startup = functools.partial(
        accept_document,
        node_name=node.node_name,
        submit=node.submit,
        table=node.table,
        force_from_node=False,
        require_from_node=True,
        jetstream=config.delivery == "jetstream",
    )
    startup = StartupFolderInput(config.startup_dir, accept_startup, node.report)
    inputs.append(("startup", startup))
    children = [
        ChildSpec(name, _with_info(process.run, functools.partial(getattr, process, "info")))
        for name, process in inputs
    ]
    return Supervisor("inputs", children, intensity=5, period=10.0)


def _timers(node: Node) -> Supervisor:
    children: list[ChildSpec] = []
    interval = node.config.start_pub_hello
    if interval > 0:
        hello = functools.partial(
            hello_loop,
            _HelloWithKey(node),
            central=node.config.central_node_name,
            interval=interval,
            ack_timeout=node.config.default_message_timeout,
        )
        children.append(ChildSpec("hello", hello))
    acl = node.security.acl
    if acl.asks_central:
        update = functools.partial(
            acl.update_loop, node, ack_timeout=node.config.default_message_timeout
        )
        children.append(ChildSpec("acl-update", update))
    keys = node.security.key_updates
    if keys.asks_central:
        update = functools.partial(
            keys.update_loop, node, ack_timeout=node.config.default_message_timeout
        )
        children.append(ChildSpec("keys-update", update))
    return Supervisor("timers", children, intensity=5, period=10.0)


def _control(node: Node) -> ControlServer:
    return ControlServer(node.config.control_socket_path, node)


class _HelloWithKey:
    """The node as the hello timer sees it: its hellos carry the node's public signing key
    in ``data`` (Steward's hello), which the key authority records."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def node_name(self) -> str:
        return self._node.node_name

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        key = self._node.security.public_key
        return await self._node.submit(
            [attrs.evolve(m, data=key) if m.method == HELLO_METHOD else m for m in messages]
        )
