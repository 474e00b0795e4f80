"""One steward-otp node: its supervision tree, built from a Config.

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

A node is also the embedding API's entry point: ``async with Node(config) as node: ...``
runs the tree in the background of the ``async with`` block; ``await node.run()`` runs it
until :meth:`Node.stop` and returns the exit status.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
import trio

from steward_otp.bridge import BridgeSettings, NatsBridge
from steward_otp.broker import BrokerSpec, EmbeddedBroker
from steward_otp.config import Config, ConfigError, method_names_setting, prepare_folders
from steward_otp.control.server import ControlServer
from steward_otp.control.server import answer as control_answer
from steward_otp.error_kernel import (
    ERROR_CENTRAL_NODE,
    ERROR_LOG_METHOD,
    ErrorKernel,
    error_log_senders_for,
)
from steward_otp.files import FileWriter
from steward_otp.handlers import builtin_handlers, command_groups
from steward_otp.handlers.acl import acl_handlers
from steward_otp.handlers.base import Handler, HandlerTable, Level
from steward_otp.handlers.copy import CopySessions
from steward_otp.handlers.keys import key_handlers
from steward_otp.handlers.liveness import hello_handler
from steward_otp.inbound import Subscriber
from steward_otp.inputs.folders import ReadFolderInput, StartupFolderInput
from steward_otp.inputs.http import HttpInput
from steward_otp.inputs.intake import Answer, accept_document
from steward_otp.inputs.tcp import TcpInput
from steward_otp.inputs.unix_socket import UnixSocketInput
from steward_otp.jetstream import StreamLimits
from steward_otp.limits import payload_limit_from
from steward_otp.message import Message, MessageDefaults, subject_for_node
from steward_otp.methods import MethodSpec, MethodTable, builtin_table
from steward_otp.metrics import MetricsServer, NodeMetrics
from steward_otp.node_services import HandlerServices
from steward_otp.outbound.ack_inboxes import AckInboxes
from steward_otp.outbound.publisher import Publisher
from steward_otp.outbound.router import Router
from steward_otp.reply_hub import NotifyingStore, ReplyHub
from steward_otp.security.nkey import NkeyError, nkey_from_ssh_key, write_nkey_files
from steward_otp.security.outbox import SigningOutbox
from steward_otp.security.service import NodeSecurity, SecuritySetupError
from steward_otp.security.verify import HELLO_METHOD, VerifyHook
from steward_otp.store import Store, check_store_file, store_path
from steward_otp.stream_intake import StreamIntake
from steward_otp.subscriber_control import SubscriberProcesses
from steward_otp.supervisors import (
    ChildSpec,
    DynamicSupervisor,
    ProcessSnapshot,
    Registry,
    Restart,
    Strategy,
    Supervisor,
    current_child,
    run_root,
)
from steward_otp.timers import hello_loop
from steward_otp.transport import Transport, live_info

log = logging.getLogger(__name__)


def broker_url(config: Config) -> str:
    """The NATS URL a node connects to: the configured broker, or its embedded one."""
    address = config.broker_address
    if not address:
        return f"nats://127.0.0.1:{config.embedded_broker_port}"
    urls = (a.strip() for a in address.split(","))
    return ",".join(url if "://" in url else f"nats://{url}" for url in urls)


def _reconnect_jitter(config: Config, url: str) -> float:
    """The reconnect jitter setting that applies: the TLS one for TLS connections."""
    tls = bool(config.root_ca_path or config.tls_cert_file) or any(
        u.strip().startswith(("tls://", "wss://")) for u in url.split(",")
    )
    return config.nats_reconnect_jitter_tls if tls else config.nats_reconnect_jitter


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


class _Ready:
    """A ``task_status`` that sets an event when the tree reports started."""

    def __init__(self, event: trio.Event) -> None:
        self.event = event

    def started(self, value: object = None) -> None:
        self.event.set()


class Node:
    """One node: the services its processes share, and the supervision tree that runs them.

    ``handlers`` adds (or replaces) request methods served by this node; each handler's
    method is added to the node's method table, so messages naming it validate and route.
    ``methods`` adds methods this node can send but does not serve (e.g. a custom method
    served by other nodes); a method the node serves keeps its handler's spec (for a
    built-in method, the one in ``BUILTIN_METHODS``), and a different one in ``methods`` is a
    ``ValueError``.

    Every message the node sends is signed with its key (``<home>/etc/signing/``, made on
    first start); with ``enable_signature_check`` its subscribers run only messages signed by
    an allowed key (``security``; see docs/security.md).

    ``transport`` replaces the NATS connection (and the embedded broker) with another
    :class:`~steward_otp.transport.Transport`, e.g. a
    :class:`~steward_otp.loopback.LoopbackTransport` shared by several nodes in one process.
    """

    def __init__(
        self,
        config: Config,
        *,
        handlers: Iterable[Handler] = (),
        methods: Iterable[MethodSpec] = (),
        registry: Registry | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.config = config
        self.disabled_methods = method_names_setting(config.disabled_methods)
        """Methods whose subscriber the configuration does not start (``disabled_methods``)."""
        extra = list(handlers)
        self.table: MethodTable = builtin_table()
        for spec in [*methods, *(h.method for h in extra)]:
            self.table.register(spec, replace=True)
        self.security = NodeSecurity(config)
        self.hellos: dict[str, float] = {}
        self.processes = SubscriberProcesses(self, self._subscriber)
        """The subscribers as the ``REQOpProcess*`` handlers control them (only they get it)."""
        self.error_log_senders = error_log_senders_for(
            config, self.security, self.hellos, lambda text: self.report("warning", text)
        )
        self.copy_sessions = CopySessions()
        """The ``copies`` supervisor: one process per copy this node receives."""
        self.handlers = HandlerTable(
            [
                *builtin_handlers(self.processes, self, self.copy_sessions),
                hello_handler(self.security.register_hello),
                self.error_log_senders.handler(),  # REQErrorLog from known nodes only
                *key_handlers(self.security),
                *acl_handlers(
                    self.security.acl,
                    lambda: [*self.security.trust.state.allowed, *self.hellos],
                ),
                *extra,
            ]
        )
        for served in self.handlers:  # what senders validate against is what is subscribed
            declared = self.table.lookup(served.name)
            if declared != served.method:
                raise ValueError(
                    f"method {served.name}: methods= declares it as {declared!r}, but this "
                    f"node serves it as {served.method!r}; leave it out of methods="
                )
        unknown = sorted(m for m in self.disabled_methods if m not in self.handlers)
        if unknown:  # a typo would leave the method it meant served
            raise ConfigError(
                f"disabled_methods names {', '.join(map(repr, unknown))}, which this node does "
                f"not serve; allowed: {', '.join(self.handlers.names())}",
                field="disabled_methods",
            )
        self.registry = registry or Registry()
        self.reply_hub = ReplyHub()  # who waits for which replies (steward-otp cmd, send --wait)
        check_store_file(store_path(config.db_dir), home=config.home)  # empty or damaged: stop
        self.store: Store = NotifyingStore(
            store_path(config.db_dir),
            hub=self.reply_hub,
            dedupe_window=config.dedupe_retention_seconds,
            audit_retention=config.audit_retention_seconds,
            held_retention=config.outbox_retention_seconds,
        )
        self.url = broker_url(config) if transport is None else "loopback://"
        self.broker: EmbeddedBroker | None = None
        self.bridge: Transport
        if transport is not None:
            self.bridge = transport
        else:
            self.bridge = self._nats_bridge(config)
        if transport is None and not config.broker_address:
            self.broker = EmbeddedBroker(
                BrokerSpec(
                    port=config.embedded_broker_port,
                    log_file=config.var_dir / "nats-server.log",
                    server_name=config.node_name.replace(".", "_"),
                    jetstream=config.delivery == "jetstream",
                    store_dir=config.var_dir / "jetstream",
                )
            )
        self.outbox = SigningOutbox(
            self.store,
            config.node_name,
            sign=self.security.sign,
            table=self.table,
            defaults=MessageDefaults(
                retries=config.default_message_retries,
                method_timeout=max(1, int(config.default_method_timeout)),
            ),
            compress_threshold=(
                config.compress_threshold_bytes if config.compression == "lz4" else None
            ),
        )
        self.errors = ErrorKernel(
            config.node_name,
            self.outbox.submit,
            ack_timeout=max(1, int(config.error_message_timeout)),
            retries=config.error_message_retries,
        )
        self.files = FileWriter()
        self._test_send, self.test_events = trio.open_memory_channel[Message](1000)
        self.handler_services = HandlerServices(self)
        """What the node's handlers get as ``ctx.services`` (its everyday capabilities)."""
        self._stop = trio.Event()
        self.ready = trio.Event()
        self.user_messages = 0
        self.metrics = NodeMetrics(self)
        self.stream_intake: StreamIntake | None = None
        self.root = self._build_tree()

    def _nats_bridge(self, config: Config) -> NatsBridge:
        return NatsBridge(
            BridgeSettings(
                url=self.url,
                name=config.node_name,
                connect_timeout=config.nats_conn_opt_timeout,
                connect_retry_interval=config.nats_connect_retry_interval,
                reconnect_jitter=_reconnect_jitter(config, self.url),
                nkeys_seed_file=_nkey_seed_file(config),
                user_credentials_file=_nats_creds_file(config),
                tls_ca_file=str(config.resolve_path(config.root_ca_path))
                if config.root_ca_path
                else None,
                tls_cert_file=_resolved(config, config.tls_cert_file),
                tls_key_file=_resolved(config, config.tls_key_file),
            )
        )

    # ------------------------------------------------------------------ NodeServices
    # The node's own NodeServices (for embedding code and the node's processes). Its
    # handlers get ``handler_services`` instead, which offers these and nothing else.

    @property
    def node_name(self) -> str:
        """This node's name."""
        return self.config.node_name

    @property
    def home(self) -> Path:
        """This node's home folder."""
        return self.config.home

    @functools.cached_property
    def data_dir(self) -> Path:
        """Where handlers write results."""
        return self.config.data_dir

    async def submit(self, messages: Sequence[Message]) -> list[str]:
        """Accept messages into the durable outbox; returns their ids once on disk."""
        return await self.outbox.submit(messages)

    def report(self, level: Level, text: str) -> None:
        """Log locally and forward to the central error log."""
        self.errors.report(level, text)

    def test_event(self, message: Message) -> None:
        """Deliver a REQTest message to ``test_events`` (dropped when nobody reads)."""
        try:
            self._test_send.send_nowait(message)
        except trio.WouldBlock:
            log.debug("REQTest message %s dropped: nobody reads test_events", message.id)

    async def write_file(self, path: Path, data: bytes, *, append: bool) -> None:
        """Write ``data`` to ``path`` durably, grouped with concurrent writes to the same file."""
        await self.files.write(path, data, append=append)

    async def write_many(
        self, writes: Mapping[Path, bytes], *, append: bool
    ) -> dict[Path, OSError | None]:
        """Write many files durably, in a few worker-thread crossings (see FileWriter)."""
        return await self.files.write_many(writes, append=append)

    def note_hello(self, node: str) -> None:
        """Remember when ``node`` last said hello."""
        self.hellos[node] = time.time()

    def last_hellos(self) -> Mapping[str, float]:
        """Wall time of the last hello per node (filled on the node that receives them)."""
        return self.hellos

    async def control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a control request as the control socket does (QueueControl: the node gives
        itself to the REQOpQueue* handlers only)."""
        return await control_answer(self, dict(request))

    def connection_state(self) -> str:
        """The broker connection's state: connecting, connected, reconnecting or closed."""
        return self.bridge.state.value

    async def accept_document(self, document: bytes | str) -> list[Answer]:
        """The input path: parse, validate, fan out and make durable one document."""
        answers = await accept_document(
            document, node_name=self.node_name, submit=self.submit, table=self.table
        )
        self.user_messages += sum(1 for answer in answers if answer.accepted)
        return answers

    # ------------------------------------------------------------------ the tree

    def _build_tree(self) -> Supervisor:
        children: list[ChildSpec] = []
        if self.broker is not None:
            broker = self.broker
            children.append(
                ChildSpec("broker", _with_info(broker.run, lambda: broker.info), shutdown=10.0)
            )
        bridge = self.bridge
        children += [
            ChildSpec("store", _with_info(self.store.run, self._store_info), shutdown=30.0),
            ChildSpec(
                "bridge",
                _with_info(bridge.run, functools.partial(live_info, bridge)),
                shutdown=5.0,
            ),
            ChildSpec("errors", _with_info(self.errors.run, lambda: self.errors.info)),
            self._outbound().child_spec(),
            # Before inbound: the copy sessions outlive the handlers that hand them work.
            self.copy_sessions.child_spec(),
            self._inbound().child_spec(),
            self._inputs().child_spec(),
            self._timers().child_spec(),
            ChildSpec("control", self._control().run),
        ]
        if self.config.prom_host_and_port:
            server = MetricsServer(self.metrics, self.config.prom_host_and_port)
            children.append(ChildSpec("metrics", server.run))
        # The web view and the data-folder view load only when configured (the idle footprint).
        if self.config.web_listener:
            from steward_otp.web import WebServer, central_error_log  # noqa: PLC0415

            web = WebServer(
                self,
                self.config.web_listener,
                etc_dir=self.config.etc_dir,
                error_log=central_error_log(self.config.data_dir),
            )
            children.append(ChildSpec("web", web.run))
        if self.config.expose_data_folder:
            from steward_otp.data_folder_view import DataFolderView  # noqa: PLC0415

            view = DataFolderView(self.config.data_dir, self.config.expose_data_folder)
            children.append(ChildSpec("data_folder", _with_info(view.run, lambda: view.info)))
        return Supervisor(
            "node", children, strategy=Strategy.REST_FOR_ONE, intensity=5, period=30.0
        )

    def _store_info(self) -> Mapping[str, object]:
        stats = self.store.stats()
        return {"path": str(self.store.path), "commits": stats.commits}

    def _outbound(self) -> Supervisor:
        # A Publisher's handle says it is busy while it holds deliveries, so it is never
        # reaped with deliveries in flight, however short keep_publishers_alive_for is.
        acks = AckInboxes(self.bridge)
        publisher = Publisher(
            self.outbox,
            self.bridge,
            self.report,
            acks=acks,
            jetstream=self.config.delivery == "jetstream",
            limits=StreamLimits(
                max_age_seconds=self.config.jetstream_max_age_seconds,
                max_msgs_per_subject=self.config.jetstream_max_msgs_per_subject,
            ),
        )
        publishers = DynamicSupervisor(
            "publishers",
            ChildSpec("publisher", publisher.run, restart=Restart.TRANSIENT),
            intensity=10,
            period=10.0,
            idle_timeout=self.config.keep_publishers_alive_for,
        )
        router = Router(self.outbox, publishers, report=self.report)
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

    def _subscriber(self, handler: Handler, node: str) -> Subscriber:
        hooks: list[VerifyHook] = []
        if self.config.enable_signature_check:
            hooks.append(self.security.verify_hook(node=node, method=handler.name))
        return Subscriber(
            handler,
            subject_for_node(node, handler.method),
            bridge=self.bridge,
            store=self.store,
            outbox=self.outbox,
            services=self.handler_services,
            default_method_timeout=self.config.default_method_timeout,
            verify_hooks=hooks,
            on_finished=self.reply_hub.finished,
        )

    def served_methods(self) -> list[str]:
        """The methods whose subscribers the configuration starts on this node."""
        served = [
            h.name
            for h in self.handlers
            if h.name != ERROR_LOG_METHOD and h.name not in self.disabled_methods
        ]
        if ERROR_LOG_METHOD in self.handlers and self.config.acts_as_central_error_logger:
            served.append(ERROR_LOG_METHOD)
        return served

    def _log_security_posture(self) -> None:
        for level, text in self.security.startup_messages(self.served_methods()):
            log.log(level, "node %s: %s", self.node_name, text)

    def _inbound(self) -> Supervisor:
        children: list[ChildSpec] = []
        for h in self.handlers:
            if h.name == ERROR_LOG_METHOD:
                continue
            if h.name in self.disabled_methods:
                continue
            children.append(ChildSpec(h.name, self._subscriber(h, self.node_name).run))
        error_log = self.handlers.get(ERROR_LOG_METHOD)
        if error_log is not None and self.config.acts_as_central_error_logger:
            subscriber = self._subscriber(error_log, ERROR_CENTRAL_NODE)
            children.append(ChildSpec(f"{ERROR_CENTRAL_NODE}.{ERROR_LOG_METHOD}", subscriber.run))
        if self.config.delivery == "jetstream":
            children.append(ChildSpec("stream", self._stream_intake().run))
        self.inbound_supervisor = Supervisor("inbound", children, intensity=10, period=10.0)
        return self.inbound_supervisor

    def _stream_intake(self) -> StreamIntake:
        """The JetStream consumer; its messages run on the Subscribers of their methods."""
        subscribers: dict[str, Subscriber] = {}

        def serving() -> dict[str, Subscriber]:
            # A Subscriber object per method, with the tree's handlers, built on first use.
            for name in self.served_methods():
                found = self.handlers.get(name)
                if name not in subscribers and found is not None and name != ERROR_LOG_METHOD:
                    subscribers[name] = self._subscriber(found, self.node_name)
            return subscribers

        hooks: list[VerifyHook] = []
        if self.config.enable_signature_check:

            async def verify(message: Message) -> str | None:
                hook = self.security.verify_hook(node=self.node_name, method=message.method)
                return await hook(message)

            hooks.append(verify)
        limits = StreamLimits(
            max_age_seconds=self.config.jetstream_max_age_seconds,
            max_msgs_per_subject=self.config.jetstream_max_msgs_per_subject,
            ack_wait_seconds=self.config.jetstream_ack_wait_seconds,
        )
        self.stream_intake = StreamIntake(
            self.node_name,
            bridge=self.bridge,
            store=self.store,
            services=self.handler_services,
            subscribers=serving,
            limits=limits,
            verify_hooks=hooks,
        )
        return self.stream_intake

    def posture(self) -> dict[str, Any]:
        """How this node delivers and what it checks, for ``steward-otp status``."""
        delivery: dict[str, Any] = {"mode": self.config.delivery}
        if self.config.delivery == "jetstream":
            intake = self.stream_intake
            delivery.update(
                stream_ready=bool(intake and intake.ready),
                problem=intake.problem if intake else "",
                max_age_seconds=self.config.jetstream_max_age_seconds,
                max_msgs_per_subject=self.config.jetstream_max_msgs_per_subject,
            )
        return {"delivery": delivery, "security": self.security.posture()}

    async def _kill_leftover_commands(self) -> None:
        """Stop commands a previous run of this node left running (it was killed)."""
        killed = await trio.to_thread.run_sync(command_groups.kill_all_leftovers, self.config.home)
        for pgid in killed:
            log.warning(
                "node %s: killed process group %d, left running by the previous run of this "
                "node; its command runs again if its message is still unfinished",
                self.node_name,
                pgid,
            )

    def _control(self) -> ControlServer:
        return ControlServer(self.config.control_socket_path, self)

    def _inputs(self) -> Supervisor:
        config = self.config
        inputs: list[tuple[str, Any]] = []
        if config.enable_socket:
            inputs.append(("socket", UnixSocketInput(config.socket_path, self.accept_document)))
        if config.tcp_listener:
            tcp = TcpInput(config.tcp_listener, self.accept_document, self.report)
            inputs.append(("tcp", tcp))
        if config.http_listener:
            http = HttpInput(config.http_listener, self.accept_document, self.report)
            inputs.append(("http", http))
        if config.enable_read_folder:
            read_folder = ReadFolderInput(config.readfolder_dir, self.accept_document, self.report)
            inputs.append(("readfolder", read_folder))
        # Startup messages keep their fromNode (required): replies go where they name.
        accept_startup = functools.partial(
            accept_document,
            node_name=self.node_name,
            submit=self.submit,
            table=self.table,
            force_from_node=False,
            require_from_node=True,
        )
        startup = StartupFolderInput(config.startup_dir, accept_startup, self.report)
        inputs.append(("startup", startup))
        children = [
            ChildSpec(name, _with_info(process.run, functools.partial(getattr, process, "info")))
            for name, process in inputs
        ]
        return Supervisor("inputs", children, intensity=5, period=10.0)

    def _timers(self) -> Supervisor:
        children: list[ChildSpec] = []
        interval = self.config.start_pub_hello
        if interval > 0:
            hello = functools.partial(
                hello_loop,
                _HelloWithKey(self),
                central=self.config.central_node_name,
                interval=interval,
                ack_timeout=max(1, int(self.config.default_message_timeout)),
            )
            children.append(ChildSpec("hello", hello))
        acl = self.security.acl
        if acl.asks_central:
            update = functools.partial(
                acl.update_loop, self, ack_timeout=max(1, int(self.config.default_message_timeout))
            )
            children.append(ChildSpec("acl-update", update))
        keys = self.security.key_updates
        if keys.asks_central:
            update = functools.partial(
                keys.update_loop, self, ack_timeout=max(1, int(self.config.default_message_timeout))
            )
            children.append(ChildSpec("keys-update", update))
        return Supervisor("timers", children, intensity=5, period=10.0)

    # ------------------------------------------------------------------ running

    def snapshot(self) -> ProcessSnapshot:
        """The live supervision tree, as of now."""
        return self.root.snapshot()

    def stop(self) -> None:
        """Ask the node to stop: processes stop in reverse start order, each within its grace."""
        self._stop.set()

    async def run(self) -> int:
        """Run the node until :meth:`stop`; return the exit status (0, or 1 on escalation).

        ``ready`` is set once every process of the tree has started.
        """
        prepare_folders(self.config)
        self._log_security_posture()
        await self._kill_leftover_commands()
        with payload_limit_from(lambda: self.bridge.max_payload):
            return await run_root(
                self.root, registry=self.registry, stop=self._stop, task_status=_Ready(self.ready)
            )

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Node]:
        prepare_folders(self.config)
        self._log_security_posture()
        await self._kill_leftover_commands()
        with payload_limit_from(lambda: self.bridge.max_payload):
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(self.root.run, registry=self.registry))
                try:
                    yield self
                finally:
                    self.root.stop()

    async def __aenter__(self) -> Node:
        self._context = self._running()
        return await self._context.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._context.__aexit__(exc_type, exc, tb)


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


def _resolved(config: Config, path: Path | None) -> str | None:
    """``path`` resolved against the home folder, as text; None for none."""
    return None if path is None else str(config.resolve_path(path))


def _nkey_seed_file(config: Config) -> str | None:
    """The nkey seed file to authenticate with (relative paths resolve against home).

    ``nkey_from_ed25519_ssh_key_file`` takes precedence: the nkey is derived from the SSH key
    and written to the socket folder (Steward's way, spec 8.1). Raises ConfigError when the
    SSH key cannot give one.
    """
    if config.nkey_from_ed25519_ssh_key_file is not None:
        path = config.resolve_path(config.nkey_from_ed25519_ssh_key_file)
        try:
            nkey = nkey_from_ssh_key(path)
            return str(write_nkey_files(nkey, config.tmp_dir))
        except NkeyError as exc:
            raise ConfigError(str(exc), field="nkey_from_ed25519_ssh_key_file") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot write the nkey derived from {path} to {config.tmp_dir}: "
                f"{exc.strerror or exc}",
                field="nkey_from_ed25519_ssh_key_file",
            ) from None
    if config.nkey_seed_file is not None:
        return str(config.resolve_path(config.nkey_seed_file))
    return None


_CREDS_SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("-----BEGIN NATS USER JWT-----", "a user JWT", "ey"),
    ("-----BEGIN USER NKEY SEED-----", "a user nkey seed", "SU"),
)
"""The sections nats-py reads from a ``.creds`` file: the line after each ``marker`` holds
``what``, which starts with ``prefix``."""


def _nats_creds_file(config: Config) -> str | None:
    """The NATS ``.creds`` file to authenticate with (relative paths resolve against home).

    Raises ConfigError naming ``nats_creds_file`` and the path when the file cannot be read,
    lacks the user JWT or the user nkey seed section, or has ``\\r\\n`` line ends (which
    nats-py reads into the JWT and the seed): the start stops rather than every connection
    attempt failing later.
    """
    if config.nats_creds_file is None:
        return None
    path = config.resolve_path(config.nats_creds_file)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(
            f"nats_creds_file = {str(path)!r}: cannot read it: {exc.strerror or exc}",
            field="nats_creds_file",
        ) from None
    if "\r" in text:
        raise ConfigError(
            f"nats_creds_file = {str(path)!r} has \\r\\n line ends, which the NATS client "
            "reads as part of the JWT and the seed; convert it to \\n line ends",
            field="nats_creds_file",
        )
    lines = text.splitlines()
    after = {line.strip(): lines[i + 1].strip() for i, line in enumerate(lines[:-1])}
    missing = [
        what
        for marker, what, prefix in _CREDS_SECTIONS
        if not after.get(marker, "").startswith(prefix)
    ]
    if missing:
        raise ConfigError(
            f"nats_creds_file = {str(path)!r} is not a NATS .creds file: it lacks "
            f"{' and '.join(missing)} (each on the line after its '-----BEGIN ...' line, "
            "as nsc generate creds writes them)",
            field="nats_creds_file",
        )
    return str(path)


__all__ = ["Node", "SecuritySetupError", "broker_url"]
