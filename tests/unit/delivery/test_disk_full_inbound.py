"""A full disk on the receiving side: nothing is ACKed that is not stored, nothing crashes,
nothing runs twice, and the error log hears of it a few times, not once per message.

The disk is filled as in ``tests/unit/test_store_trouble.py`` (``PRAGMA max_page_count`` on
the receiver's store); the completion writes after a handler are refused by a stand-in for
the store method, to pick exactly that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from steward_otp import codec, error_kernel
from steward_otp.delivery import receiver
from steward_otp.delivery.protocol import with_version
from steward_otp.disk_full import DiskFullNotice
from steward_otp.error_kernel import ErrorKernel
from steward_otp.handlers import HandlerContext, handler
from steward_otp.handlers.base import Level
from steward_otp.inbound.batch_intake import settle_batch
from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.store import StoreFull
from steward_otp.transport import InboundMessage
from tests.nodes import file_text, node_config, wait_for
from tests.unit.delivery.test_delivery_over_loopback import loopback_node, out_lines
from tests.unit.handlers.loopback_nodes import subscriber_restarts
from tests.unit.test_store_trouble import _fill_up, _sql

PADDING = " " * 20_000
"""Makes each stored message need pages of its own (a full disk cannot hide it in a page)."""

FULL = StoreFull("disk full: the store steward.db cannot grow; nothing was written")


def big_line(i: int) -> Message:
    return Message(
        to_node="ship1",
        method="REQToFileAppend",
        data=f"{i}{PADDING}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=1,
        retries=30,
        retry_wait=0,
        reply_method="REQNone",
    )


def recorded_reports(node: Node) -> list[str]:
    """Every text ``node`` reports to its error kernel from now on (still reported)."""
    texts: list[str] = []
    report = node.errors.report

    def record(level: Level, text: str) -> None:
        texts.append(text)
        report(level, text)

    node.errors.report = record  # type: ignore[method-assign]
    return texts


async def unlimited(node: Node) -> None:
    """Lift the page limit on ``node``'s store. The PRAGMA goes through the store process
    and may share a commit with a write the full store refuses: it is made again until it
    commits."""
    with trio.fail_after(10):
        while True:
            try:
                await _sql(node.store, "PRAGMA max_page_count = 1073741823")
                return
            except StoreFull:
                await trio.sleep(0.05)


# --- the notice


def test_the_notice_says_it_once_per_interval_and_once_when_it_is_over() -> None:
    lines: list[tuple[str, str]] = []
    now = [0.0]
    notice = DiskFullNotice(
        "ship1.REQToFileAppend.EventACK",
        "REQToFileAppend",
        lambda level, text: lines.append((level, text)),
        interval=60.0,
        clock=lambda: now[0],
    )
    notice.cleared()
    assert lines == []  # nothing to end
    for _ in range(100):
        notice.refused_messages(3, "refused and not acknowledged", FULL)
        now[0] += 0.5
    assert notice.full
    assert len(lines) == 1
    assert lines[0][0] == "error"
    assert "REQToFileAppend: 3 message(s) refused and not acknowledged" in lines[0][1]
    now[0] = 61.0
    notice.refused_messages(1, "refused", FULL)
    assert len(lines) == 2
    assert ": 298 message(s) in the last 61 s refused" in lines[1][1]
    notice.cleared()
    notice.cleared()
    assert len(lines) == 3
    assert lines[2][0] == "info"
    assert "accepts writes for REQToFileAppend again after 61 s" in lines[2][1]
    assert not notice.full
    assert notice.refused == 301


# --- settle_batch on a full disk


@attrs.define
class FullStore:
    """Refuses every batch for a full disk."""

    calls: int = 0

    async def accept_inbound_many(self, records: Any) -> list[str]:
        self.calls += 1
        raise FULL


@attrs.define
class Services:
    reports: list[str] = attrs.field(factory=list)

    def report(self, level: Level, text: str) -> None:
        self.reports.append(text)


@attrs.define
class Bridge:
    published: list[tuple[str, bytes]] = attrs.field(factory=list)

    def publish_nowait(self, subject: str, payload: bytes, *args: Any, **kwargs: Any) -> None:
        self.published.append((subject, payload))


def inbound(message: Message, reply: str) -> InboundMessage:
    encoded = codec.encode(message, compress_threshold=None)
    headers = with_version(encoded.headers)
    return InboundMessage(
        subject="ship1.REQPing.EventACK", payload=encoded.payload, reply=reply, headers=headers
    )


async def test_a_batch_refused_for_a_full_disk_is_not_acked_and_runs_nothing() -> None:
    message = Message(
        id="central:1", to_node="ship1", from_node="central", method="REQPing", ack_timeout=5
    )
    bad_sender = Message(
        id="x:1", to_node="ship1", from_node="no such/name", method="REQPing", ack_timeout=5
    )
    batch = [inbound(message, "_INBOX.a"), inbound(bad_sender, "_INBOX.b")]
    bridge, services, store = Bridge(), Services(), FullStore()
    notice = DiskFullNotice("ship1.REQPing.EventACK", "REQPing", services.report)
    for _ in range(5):
        settlement = await settle_batch(
            "ship1.REQPing.EventACK",
            receiver.triage("ship1.REQPing.EventACK", batch),
            bridge=bridge,  # type: ignore[arg-type]
            store=store,  # type: ignore[arg-type]
            services=services,  # type: ignore[arg-type]
            disk_full=notice,
        )
        assert settlement.run == ()
    assert store.calls == 5
    # Only the refusal of the bad sender went out (by id); the good message is not ACKed.
    assert {subject for subject, _ in bridge.published} == {"_INBOX.b"}
    assert all(b"central:1" not in payload for _, payload in bridge.published)
    assert len([r for r in services.reports if "disk full" in r]) == 1


# --- end to end over the loopback broker


async def test_a_full_receiver_acks_nothing_stays_up_and_runs_everything_once_later(
    tmp_path: Path,
) -> None:
    broker = LoopbackBroker()
    central = loopback_node(tmp_path, broker, "central")
    ship1 = loopback_node(tmp_path, broker, "ship1")
    reports = recorded_reports(ship1)
    async with central, ship1:
        await _fill_up(ship1.store)
        await central.submit([big_line(i) for i in range(20)])
        await wait_for(lambda: central.outbox.stats.missed_acks >= 20, timeout=20)
        await wait_for(lambda: ship1.store.stats().disk_full >= 2, timeout=20)  # retries too
        assert central.outbox.stats.delivered == 0  # nothing ACKed
        assert out_lines(tmp_path) == []
        subscriber = ship1.snapshot().find("node/inbound/REQToFileAppend")
        assert subscriber is not None and subscriber.info["disk_full_refused"] >= 20
        assert subscriber_restarts(ship1, "REQToFileAppend") == 0

        await unlimited(ship1)
        await wait_for(lambda: central.outbox.stats.delivered == 20, timeout=30)
        await wait_for(lambda: len(out_lines(tmp_path)) == 20, timeout=10)
        await trio.sleep(1.5)  # retries still in the air run nothing again
        assert out_lines(tmp_path) == list(range(20))
        assert subscriber_restarts(ship1, "REQToFileAppend") == 0
    refused = [r for r in reports if "refused and not acknowledged" in r]
    assert len(refused) == 1, refused
    assert "REQToFileAppend" in refused[0] and "disk full" in refused[0]
    assert len([r for r in reports if "accepts writes for REQToFileAppend again" in r]) == 1


def refusing_while(full: Callable[[], bool], write: Any) -> Any:
    """``write``, refusing with StoreFull while ``full()``."""

    async def refusing(*args: Any, **kwargs: Any) -> Any:
        if full():
            raise FULL
        return await write(*args, **kwargs)

    return refusing


async def test_a_completion_refused_for_a_full_disk_is_written_later_never_run_again(
    tmp_path: Path,
) -> None:
    runs: list[str] = []
    release = trio.Event()

    @handler("REQSlowEcho", reply_capable=True)
    async def slow_echo(ctx: HandlerContext, msg: Message) -> bytes:
        runs.append(msg.id)
        await release.wait()
        return b"echo " + msg.data

    broker = LoopbackBroker()
    central = Node(
        node_config(tmp_path, "central", "nats://127.0.0.1:1"),
        transport=LoopbackTransport(broker, name="central"),
        methods=[slow_echo.method],
    )
    ship1 = Node(
        node_config(tmp_path, "ship1", "nats://127.0.0.1:1"),
        transport=LoopbackTransport(broker, name="ship1"),
        handlers=[slow_echo],
    )
    full = True
    for name in ("mark_inbound_done", "finish_inbound", "enqueue"):
        original = getattr(ship1.store, name)
        setattr(ship1.store, name, refusing_while(lambda: full, original))
    reports = recorded_reports(ship1)
    request = Message(
        to_node="ship1",
        method="REQSlowEcho",
        data=b"hi",
        directory="out",
        file_name="echo.txt",
        ack_timeout=2,
        retries=5,
        method_timeout=30,
        reply_method="REQToFileAppend",
    )
    reply_file = tmp_path / "central" / "data" / "out" / "ship1" / "echo.txt"
    async with central, ship1:
        [msg_id] = await central.submit([request])
        await wait_for(lambda: runs == [msg_id], timeout=10)
        release.set()
        await wait_for(lambda: any("waiting for their outcome" in r for r in reports), timeout=10)
        await trio.sleep(1.5)  # a few attempts, each refused
        [row] = await ship1.store.unfinished_inbound()
        assert row.msg_id == msg_id  # still in progress
        assert subscriber_restarts(ship1, "REQSlowEcho") == 0

        full = False
        await wait_for(lambda: file_text(reply_file) == "echo hi", timeout=20)
        with trio.fail_after(10):
            while await ship1.store.unfinished_inbound():
                await trio.sleep(0.1)
        assert subscriber_restarts(ship1, "REQSlowEcho") == 0
    assert runs == [msg_id]  # the handler ran once


async def test_the_error_kernel_holds_its_lines_through_a_full_disk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(error_kernel, "FULL_RETRY_SECONDS", 0.01)
    stored: list[Message] = []
    refusals = [FULL, FULL, FULL]

    async def submit(messages: Sequence[Message]) -> list[str]:
        if refusals:
            raise refusals.pop()
        stored.extend(messages)
        return [m.id for m in messages]

    kernel = ErrorKernel("ship1", submit)
    async with trio.open_nursery() as nursery:
        await nursery.start(kernel.run)
        kernel.report("error", "error: something")
        await wait_for(lambda: len(stored) == 1, timeout=5)
        kernel.report("error", "error: something else")
        await wait_for(lambda: len(stored) == 2, timeout=5)
        nursery.cancel_scope.cancel()
    assert refusals == []
    assert [m.data.decode().split(", ", 2)[2] for m in stored] == [
        "error: something\n",
        "error: something else\n",
    ]
