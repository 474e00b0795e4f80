"""The JetStream side of inbound: one process per node taking its messages from the broker.

On start it makes sure the stream and this node's durable consumer exist (retrying while the
broker has no JetStream, with a clear error line), then takes batches from the consumer's
deliver subject (queue group = the node name). Each batch goes through the same steps as a
Subscriber's (:func:`steward_otp.inbound.batch_intake.settle_batch`): triage, verify, one
store operation for the whole batch, then an acknowledgement to the broker per delivery --
only after the message is durable in this node's inbox, so a crash before that makes the
broker deliver it again and the inbox's dedupe keeps it from running twice. New messages are
run by the Subscriber of their method (quick ones with their batch, others in their own task).

A message to ``toNode: all`` (broadcast) runs here as if it named this node: its replies come
from this node's name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from steward_otp import codec
from steward_otp.delivery import receiver
from steward_otp.disk_full import DiskFullNotice
from steward_otp.handlers.base import NodeServices
from steward_otp.inbound.batch_intake import next_batch, settle_batch
from steward_otp.inbound.subscriber import Subscriber
from steward_otp.inbound.verify import VerifyHook
from steward_otp.jetstream import (
    BROADCAST_NODE,
    JetStreamUnavailable,
    StreamLimits,
    deliver_subject,
    ensure_stream_and_consumer,
)
from steward_otp.message import Message
from steward_otp.store import Store
from steward_otp.supervisors import current_child
from steward_otp.transport import InboundMessage, Transport

log = logging.getLogger(__name__)

ENSURE_RETRY_SECONDS = 5.0
"""How often the stream and consumer are asked for again while the broker refuses."""


class StreamIntake:
    """Supervised process: this node's JetStream consumer. See the module docstring."""

    def __init__(
        self,
        node_name: str,
        *,
        bridge: Transport,
        store: Store,
        services: NodeServices,
        subscribers: Callable[[], Mapping[str, Subscriber]],
        limits: StreamLimits,
        verify_hooks: Sequence[VerifyHook] = (),
        max_batch: int = 1024,
    ) -> None:
        self.node_name = node_name
        self.bridge = bridge
        self.store = store
        self.services = services
        self.subscribers = subscribers
        self.limits = limits
        self.verify_hooks = tuple(verify_hooks)
        self.max_batch = max_batch
        self.received = 0
        self.duplicates = 0
        self.ready = False
        self.problem = ""
        self.disk_full = DiskFullNotice(
            f"stream intake of {node_name}", "JetStream deliveries", services.report
        )
        """Says, sparingly, when the store refuses deliveries for a full disk."""

    async def run(self, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume until cancelled; ready at once (the stream is set up in the background)."""
        subject = deliver_subject(self.node_name)
        subscription = self.bridge.subscribe(subject, queue=self.node_name)
        current_child().info_provider = lambda: {
            "subject": subject,
            "stream_ready": self.ready,
            "problem": self.problem,
            "received": self.received,
            "duplicates": self.duplicates,
            "dropped": subscription.dropped,
        }
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ensure_stream)
                while True:
                    batch = await next_batch(subscription.receive, self.max_batch)
                    if not batch:
                        raise ConnectionError(f"{subject}: the subscription ended")
                    self.received += len(batch)
                    await self._handle_batch(subject, batch, nursery)
        finally:
            self.bridge.unsubscribe(subscription)

    async def _ensure_stream(self) -> None:
        failures = 0
        while True:
            try:
                await ensure_stream_and_consumer(self.bridge, self.node_name, self.limits)
            except JetStreamUnavailable as exc:
                failures += 1
                self.problem = str(exc)
                if failures == 1 or failures % 60 == 0:
                    self.services.report(
                        "error",
                        f"error: JetStream delivery on {self.node_name} is not available: "
                        f"{exc}; start the broker with JetStream (nats-server --jetstream) or "
                        "use --delivery core",
                    )
                await trio.sleep(ENSURE_RETRY_SECONDS)
                continue
            self.ready, self.problem = True, ""
            log.info("JetStream consumer of %s is ready", self.node_name)
            return

    async def _handle_batch(
        self, subject: str, batch: list[InboundMessage], nursery: trio.Nursery
    ) -> None:
        triaged = receiver.triage(subject, batch, jetstream=True)
        subscribers = self.subscribers()
        candidates: list[receiver.Candidate] = []
        rejections = list(triaged.rejections)
        for candidate in triaged.candidates:
            if candidate.message.method not in subscribers:
                reason = (
                    f'field "method": value {candidate.message.method!r} is not served on '
                    f"{self.node_name}; allowed: {', '.join(sorted(subscribers))}"
                )
                self.services.report("error", f"error: {subject}: {reason}")
                rejections.append(
                    receiver.Rejection(candidate.reply, candidate.message.id, reason, True)
                )
                continue
            candidates.append(self._addressed_here(candidate))
        triaged = attrs.evolve(triaged, candidates=tuple(candidates), rejections=tuple(rejections))
        settlement = await settle_batch(
            subject,
            triaged,
            bridge=self.bridge,
            store=self.store,
            services=self.services,
            verify_hooks=self.verify_hooks,
            disk_full=self.disk_full,
        )
        self.duplicates += settlement.duplicates
        by_method: dict[str, list[Message]] = {}
        for message in settlement.run:
            by_method.setdefault(message.method, []).append(message)
        for method, messages in by_method.items():
            await subscribers[method].start_runs(messages, nursery)

    def _addressed_here(self, candidate: receiver.Candidate) -> receiver.Candidate:
        """A broadcast runs as a message to this node (its replies come from this node)."""
        if candidate.message.to_node != BROADCAST_NODE:
            return candidate
        message = attrs.evolve(candidate.message, to_node=self.node_name)
        stored = codec.encode(message, compress_threshold=None).payload
        return attrs.evolve(candidate, message=message, stored=stored)
