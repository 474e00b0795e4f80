"""From a subscription to what runs: a batch of received messages is triaged, verified,
stored and acknowledged (the same steps for the Subscribers and for the JetStream intake).

1. :func:`next_batch` waits for a message, then takes whatever else has arrived;
2. :func:`settle_batch` reports what triage found (garbage and messages without id or
   ``fromNode`` are reported and not ACKed; an unsupported protocol version is rejected by
   id), runs the verify hooks (:mod:`steward_otp.inbound.verify`), de-duplicates and
   persists the whole batch in ONE store operation, then ACKs: one ACK per sender (reply
   subject) listing every id of the batch it asked an ACK for -- also duplicates, whose
   first ACK was evidently lost.

Guarantees: the ids are durable before any ACK goes out, so a message is never ACKed and
then lost; only ids the store reported new are returned to run, once. A batch the store
refuses for a full disk is not ACKed and nothing of it runs (its senders send it again);
rejections and terminations still go out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import trio

from steward_otp.delivery import receiver
from steward_otp.disk_full import DiskFullNotice
from steward_otp.handlers.base import Level, NodeServices
from steward_otp.inbound.verify import VerifyHook, verify_candidates
from steward_otp.jetstream import TERMINATE
from steward_otp.store import Store, StoreFull
from steward_otp.transport import BridgeBusy, InboundMessage, Transport

REFUSED = "refused and not acknowledged (their senders send them again)"


def _level(name: str) -> Level:
    return "warning" if name == "warning" else "info" if name == "info" else "error"


async def next_batch(
    receive: trio.MemoryReceiveChannel[InboundMessage], max_batch: int
) -> list[InboundMessage]:
    """Wait for a message, then take whatever else has arrived, up to ``max_batch``.

    Empty when the channel ended (the transport dropped the subscription).
    """
    try:
        batch = [await receive.receive()]
    except (trio.EndOfChannel, trio.ClosedResourceError):
        return []
    while len(batch) < max_batch:
        try:
            batch.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            break
    return batch


async def settle_batch(
    subject: str,
    triaged: receiver.Triage,
    *,
    bridge: Transport,
    store: Store,
    services: NodeServices,
    verify_hooks: Sequence[VerifyHook] = (),
    disk_full: DiskFullNotice | None = None,
) -> receiver.Settlement:
    """Report, verify, persist and acknowledge one triaged batch; returns what to run.

    The ids are durable (one store operation) before any ACK goes out; refused messages are
    rejected by id; deliveries that can never run are terminated at the broker.

    When the store refuses the batch for a full disk, none of its messages is ACKed and none
    runs (their senders send them again); rejections and terminations still go out. It is
    told to ``disk_full`` (rate-limited there), or else reported once for this batch.
    """
    for problem in triaged.problems:
        services.report(_level(problem.level), problem.text)
    for reply in triaged.terminate:
        with contextlib.suppress(BridgeBusy):
            bridge.publish_nowait(reply, TERMINATE)
    candidates = list(triaged.candidates)
    rejections = list(triaged.rejections)
    if verify_hooks:
        candidates = await verify_candidates(
            subject, candidates, rejections, verify_hooks, services
        )
    new_ids: list[str] = []
    if candidates:
        try:
            new_ids = await store.accept_inbound_many(receiver.stored_rows(candidates))
        except StoreFull as exc:
            if disk_full is None:
                text = f"error: {subject}: {REFUSED} ({len(candidates)} message(s)): {exc}"
                services.report("error", text)
            else:
                disk_full.refused_messages(len(candidates), REFUSED, exc)
            candidates = []
        else:
            if disk_full is not None:
                disk_full.cleared()
    settlement = receiver.settle(candidates, new_ids, rejections)
    for ack in settlement.acks:
        # Outbound queue full: no ACK this time; the sender retries, dedupe stops a rerun.
        with contextlib.suppress(BridgeBusy):
            bridge.publish_nowait(ack.subject, ack.payload)
    return settlement
