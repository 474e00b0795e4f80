"""The reply hub behind `steward-otp cmd` and `send --wait`: a reply that arrives while
waiting is handed over the moment its handler finishes, with no read of the audit log and
no polling delay; what arrived before the wait is read from the audit log once; nothing is
lost, nothing reported twice."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

from steward_otp import codec
from steward_otp.message import Message
from steward_otp.replies.follow import follow
from steward_otp.replies.hub import NotifyingStore, ReplyHub, Waiter
from steward_otp.store import AuditRecord, Direction, OutboxEntry

REQUEST = Message(to_node="ship1", from_node="central", id="central:1", method="REQCliCommand")


def reply_to(request: Message, reply_id: str, data: bytes, *, error: bool = False) -> Message:
    return Message(
        to_node="central",
        from_node=request.to_node,
        id=reply_id,
        method="REQToFileAppend",
        data=data,
        file_name="cmd.log.error" if error else "cmd.log",
        previous_message=request,
        is_reply=True,
    )


def record(seq: int, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "seq": seq,
        "direction": Direction.OUTBOUND,
        "msg_id": f"m{seq}",
        "peer_node": "ship1",
        "method": "REQCliCommand",
        "outcome": "delivered",
        "attempts": 1,
        "payload": None,
        "created_at": 0.0,
        "recorded_at": float(seq),
        "reason": None,
    }
    values.update(fields)
    return AuditRecord(**values)


def audited_reply(seq: int, reply: Message) -> AuditRecord:
    payload = codec.encode(reply, compress_threshold=None).payload
    return record(
        seq,
        direction=Direction.INBOUND,
        msg_id=reply.id,
        peer_node=reply.from_node,
        method=reply.method,
        outcome="ok",
        attempts=None,
        payload=payload,
    )


class CountingAudit:
    """An audit log in memory that counts its reads: position reads and by-id reads."""

    def __init__(self, records: list[AuditRecord] | None = None) -> None:
        self.records = list(records or [])
        self.position_reads = 0
        self.id_reads = 0

    def add(self, rec: AuditRecord) -> None:
        self.records.append(rec)

    async def audit_log(
        self, *, msg_id: str | None = None, limit: int | None = 1000, after_seq: int = 0
    ) -> list[AuditRecord]:
        await trio.lowlevel.checkpoint()
        if msg_id is None:
            self.position_reads += 1
        else:
            self.id_reads += 1
        found = [r for r in self.records if r.seq > after_seq and msg_id in (None, r.msg_id)]
        return found[:limit]

    async def list_outbox(self, **_: Any) -> list[Any]:
        return []


async def collect(
    events: list[dict[str, Any]], store: CountingAudit, hub: ReplyHub | None, **kw: Any
) -> None:
    options: dict[str, Any] = {"after_seq": 0, "timeout": 30, "quiet": 0.5, "heartbeat": 100}
    options.update(kw)
    ids = options.pop("ids", [REQUEST.id])
    async for event in follow(store, ids, hub=hub, **options):
        events.append({**event, "at": trio.current_time()})


async def test_a_reply_arriving_while_waiting_is_delivered_at_once_without_reading_the_audit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingAudit()
    hub = ReplyHub()
    events: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, events, store, hub)
        await trio.sleep(1)  # the watch has read the audit log once and waits
        reads_at_start = (store.position_reads, store.id_reads)
        assert reads_at_start == (1, 1) and not events and hub.waiters == 1

        sent_at = trio.current_time()
        hub.finished([reply_to(REQUEST, "ship1:9", b"up 3 days\n")])
        await trio.sleep(5)

    [reply, end] = [e for e in events if e["event"] != "waiting"]
    assert reply["event"] == "reply" and reply["output"] == "up 3 days\n"
    assert reply["node"] == "ship1" and reply["replyId"] == "ship1:9" and not reply["error"]
    assert reply["at"] == sent_at  # no polling delay: handed over at once
    # ... and without a read of the audit log
    assert (store.position_reads, store.id_reads) == reads_at_start
    assert end["event"] == "end" and not end["timedOut"]
    assert end["messages"][0]["state"] == "replied"
    assert end["at"] == sent_at + 0.5  # ended after `quiet`, not at the timeout
    assert hub.waiters == 0


async def test_replies_before_the_wait_come_from_the_audit_log_and_none_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    early = reply_to(REQUEST, "ship1:1", b"early\n")
    late = reply_to(REQUEST, "ship1:2", b"late\n", error=True)
    store = CountingAudit([record(1), audited_reply(2, early)])
    hub = ReplyHub()
    events: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, events, store, hub)
        await trio.sleep(0.1)
        # The early reply's hub notice comes after the watch read the audit log (it was
        # committed before, announced after): reported once. The late one is audited and
        # announced: reported once too.
        hub.finished([early])
        store.add(audited_reply(3, late))
        hub.finished([late])
        await trio.sleep(2)

    got = [(e["event"], e.get("replyId")) for e in events if e["event"] != "waiting"]
    assert got == [("reply", "ship1:1"), ("reply", "ship1:2"), ("end", None)]
    [summary] = events[-1]["messages"]
    assert summary["replies"] == 2 and summary["errors"] == 1


async def test_outcomes_are_read_by_id_when_the_hub_announces_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingAudit()
    hub = ReplyHub()
    events: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(collect, events, store, hub, ids=["central:1", "central:2"])
        )
        await trio.sleep(1)
        reads = store.position_reads
        store.add(record(1, msg_id="central:1"))  # delivered
        store.add(record(2, msg_id="central:2", outcome="failed", reason="max retries"))
        hub.outcomes(["central:1", "central:2", "someone-else"])
        hub.outcomes(["central:2"])  # told twice: reported once
        await trio.sleep(1)
        hub.finished([reply_to(REQUEST, "ship1:3", b"ok\n")])
        await trio.sleep(2)

    got = [(e["event"], e.get("id"), e.get("state")) for e in events if e["event"] != "waiting"]
    assert got[:3] == [
        ("state", "central:1", "delivered"),
        ("state", "central:2", "failed"),
        ("reply", "central:1", None),
    ]
    assert got[3][0] == "end"
    assert store.position_reads == reads


async def test_a_purge_or_a_full_mailbox_makes_the_waiter_read_the_audit_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingAudit()
    hub = ReplyHub(capacity=2)
    events: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        ids = ["central:1", "central:2", "central:3"]
        nursery.start_soon(functools.partial(collect, events, store, hub, ids=ids))
        await trio.sleep(1)
        store.add(record(1, msg_id="central:1", outcome="purged"))
        hub.outcomes_unknown()  # a purge: which ids is not known
        await trio.sleep(1)
        # Three replies into a mailbox of two: the third is found in the audit log.
        for n, request_id in enumerate(["central:1", "central:2", "central:3"]):
            request = Message(to_node=f"ship{n}", from_node="central", id=request_id, method="x")
            reply = reply_to(request, f"r{n}", b"hi\n")
            store.add(audited_reply(10 + n, reply))
            hub.finished([reply])
        await trio.sleep(2)

    got: list[tuple[str, Any]] = [
        (e["event"], e.get("id")) for e in events if e["event"] != "waiting"
    ]
    assert got[0] == ("state", "central:1")
    assert sorted(i for kind, i in got if kind == "reply") == ids
    assert got[-1][0] == "end" and not events[-1]["timedOut"]


async def test_without_news_the_watch_times_out_with_heartbeats(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingAudit()
    hub = ReplyHub()
    events: list[dict[str, Any]] = []
    await collect(events, store, hub, timeout=12, heartbeat=5)
    kinds = [e["event"] for e in events]
    assert kinds == ["waiting", "waiting", "end"]
    assert [e["at"] for e in events] == [5, 10, 12]
    assert events[-1]["timedOut"] and events[-1]["messages"][0]["state"] == "unknown"
    assert store.position_reads == 1  # the one read at the start


def test_the_hub_routes_replies_by_the_id_they_answer() -> None:
    hub = ReplyHub()
    other = Message(to_node="ship2", from_node="central", id="central:2", method="x")
    with hub.watch(["central:1"]) as one, hub.watch(["central:1", "central:2"]) as both:
        hub.finished([reply_to(REQUEST, "a", b""), reply_to(other, "b", b""), REQUEST])
        hub.outcomes(["central:2"])
        notices, lost = one.take()
        assert [getattr(n, "request_id", None) for n in notices] == ["central:1"] and not lost
        notices, _ = both.take()
        assert len(notices) == 3
        assert one.take() == ([], False)
    assert hub.waiters == 0
    hub.finished([reply_to(REQUEST, "c", b"")])  # nobody waits: nothing kept


async def test_waiter_wait_returns_at_the_deadline_or_on_a_notice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiter = Waiter(["x"])
    await waiter.wait(trio.current_time() + 3)
    assert trio.current_time() == 3
    waiter.lost_track()
    await waiter.wait(trio.current_time() + 3)
    assert trio.current_time() == 3 and waiter.take() == ([], True)


async def test_the_node_store_announces_each_outcome_once_committed(tmp_path: Path) -> None:
    hub = ReplyHub()
    store = NotifyingStore(tmp_path / "steward.db", hub=hub)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        ids = ["m1", "m2", "m3", "m4", "m5"]
        await store.enqueue([OutboxEntry(i, "ship1", "REQPing", b"x", time.time()) for i in ids])
        with hub.watch(ids) as waiter:
            assert await store.mark_delivered_many(["m1", "gone"]) == ["m1"]
            assert await store.mark_delivered("m2")
            assert await store.mark_failed("m3", "max retries reached")
            assert await store.cancel("m4")
            assert not await store.cancel("m4")  # not active any more: nothing to tell
            notices, lost = waiter.take()
            assert [getattr(n, "msg_id", None) for n in notices] == ["m1", "m2", "m3", "m4"]
            assert not lost
            [audited] = await store.audit_log(msg_id="m3")
            assert audited.outcome == "failed"  # committed before it was announced
            assert await store.purge() == 3  # m5 queued, m3 failed, m4 cancelled
            assert waiter.take()[1]  # a purge does not say which: read the audit log
        nursery.cancel_scope.cancel()
