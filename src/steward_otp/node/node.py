"""The Node: the services its processes share, and the running of its supervision tree.

A node is the embedding API's entry point: ``async with Node(config) as node: ...`` runs the
tree (:mod:`steward_otp.node.tree`) in the background of the ``async with`` block; ``await
node.run()`` runs it until :meth:`Node.stop` and returns the exit status (0, or 1 when the
root supervisor escalates). Before the tree starts, the node's folders are prepared, its
security posture is logged and commands a killed previous run left running are stopped.

A node is also the :class:`~steward_otp.handlers.base.NodeServices` of its own processes and
of embedding code; its handlers get only :class:`~steward_otp.node.services.HandlerServices`.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from steward_otp.broker import EmbeddedBroker
from steward_otp.config import Config, ConfigError, method_names_setting, prepare_folders
from steward_otp.control.server import answer as control_answer
from steward_otp.error_kernel import ERROR_LOG_METHOD, ErrorKernel, error_log_senders_for
from steward_otp.files import FileWriter
from steward_otp.handlers import builtin_handlers, command_groups
from steward_otp.handlers.acl import acl_handlers
from steward_otp.handlers.base import Handler, HandlerTable, Level
from steward_otp.handlers.copy import CopySessions
from steward_otp.handlers.keys import key_handlers
from steward_otp.handlers.liveness import hello_handler
from steward_otp.inbound.stream_intake import StreamIntake
from steward_otp.inputs.intake import Answer, accept_document
from steward_otp.limits import payload_limit_from
from steward_otp.message import Message, MessageDefaults
from steward_otp.methods import MethodSpec, MethodTable, builtin_table
from steward_otp.metrics import NodeMetrics
from steward_otp.node.connection import broker_url, embedded_broker, nats_bridge
from steward_otp.node.services import HandlerServices
from steward_otp.node.subscriber_control import SubscriberProcesses
from steward_otp.node.tree import build_tree, subscriber_for
from steward_otp.replies.hub import NotifyingStore, ReplyHub
from steward_otp.security.outbox import SigningOutbox
from steward_otp.security.service import NodeSecurity
from steward_otp.store import Store, check_store_file, store_path
from steward_otp.supervisors import ProcessSnapshot, Registry, Supervisor, run_root
from steward_otp.transport import Transport

log = logging.getLogger(__name__)


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

    inbound_supervisor: Supervisor
    """The ``inbound`` supervisor, where the ``REQOpProcess*`` handlers start and stop
    Subscribers (set when the tree is built)."""

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
        self.processes = SubscriberProcesses(self, functools.partial(subscriber_for, self))
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
            self.bridge = nats_bridge(config, self.url)
        if transport is None and not config.broker_address:
            self.broker = embedded_broker(config)
        self.outbox = SigningOutbox(
            self.store,
            config.node_name,
            signer=self.security,
            table=self.table,
            defaults=MessageDefaults(
                retries=config.default_message_retries,
                method_timeout=math.ceil(config.default_method_timeout),
            ),
            compress_threshold=(
                config.compress_threshold_bytes if config.compression == "lz4" else None
            ),
        )
        self.errors = ErrorKernel(
            config.node_name,
            self.outbox.submit,
            ack_timeout=config.error_message_timeout,
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
        self.root = build_tree(self)

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
            document,
            node_name=self.node_name,
            submit=self.submit,
            table=self.table,
            jetstream=self.config.delivery == "jetstream",
        )
        self.user_messages += sum(1 for answer in answers if answer.accepted)
        return answers

    # ------------------------------------------------------------------ what it serves

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
