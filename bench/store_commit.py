"""Group commit of the store: messages/s for enqueue + mark_delivered, against raw SQLite.

For 1, 10 and 100 concurrent writers, each message costs two durable store operations
(``enqueue`` then ``mark_delivered``: outbox row in, audit row in, outbox row out), measured
with ``synchronous`` FULL (fsync at every commit, the default) and NORMAL. Baselines, measured
in the same run on the same schema and disk:

* ``raw 1 txn``: the same rows written with ``executemany`` in ONE transaction and one commit,
  the ceiling of what SQLite can do (no per-message durability at all);
* ``raw txn/msg``: the same work, one transaction per message operation, no batching: what
  durability would cost without group commit.

    .venv/bin/python bench/store_commit.py [--messages 3000] [--payload 200]

Figures only; nothing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from steward_otp.store import OutboxEntry, Store
from steward_otp.store.schema import Synchronous, open_database

WRITERS = (1, 10, 100)
LEVELS: tuple[Synchronous, ...] = ("FULL", "NORMAL")


def _entries(count: int, payload: bytes, tag: str) -> list[OutboxEntry]:
    now = time.time()
    return [
        OutboxEntry(f"{tag}-{i}", f"ship{i % 10}", "REQCliCommand", payload, now)
        for i in range(count)
    ]


def _audit_rows(entries: list[OutboxEntry], now: float) -> list[tuple[object, ...]]:
    return [
        (e.msg_id, e.to_node, e.method, "delivered", 0, e.payload, e.created_at, now)
        for e in entries
    ]


_INSERT_OUTBOX = (
    "INSERT INTO outbox (msg_id, to_node, method, payload, state, attempts, created_at,"
    " not_before, updated_at) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (direction, msg_id, peer_node, method, outcome, attempts, payload,"
    " created_at, recorded_at) VALUES ('out', ?, ?, ?, ?, ?, ?, ?, ?)"
)


def raw_one_transaction(folder: Path, level: Synchronous, count: int, payload: bytes) -> float:
    """Messages/s writing everything with executemany in one transaction."""
    db = open_database(folder / "raw1.db", synchronous=level)
    entries = _entries(count, payload, "raw")
    now = time.time()
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        _INSERT_OUTBOX,
        [(e.msg_id, e.to_node, e.method, e.payload, e.created_at, 0.0, now) for e in entries],
    )
    db.executemany(_INSERT_AUDIT, _audit_rows(entries, now))
    db.executemany("DELETE FROM outbox WHERE msg_id = ?", [(e.msg_id,) for e in entries])
    db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return count / elapsed


def raw_transaction_per_operation(
    folder: Path, level: Synchronous, count: int, payload: bytes
) -> float:
    """Messages/s with one transaction per store operation (two per message), no batching."""
    db = open_database(folder / "rawn.db", synchronous=level)
    entries = _entries(count, payload, "rawn")
    started = time.perf_counter()
    for e in entries:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.execute(_INSERT_OUTBOX, (e.msg_id, e.to_node, e.method, e.payload, e.created_at, 0, now))
        db.execute("COMMIT")
        db.execute("BEGIN IMMEDIATE")
        db.execute(_INSERT_AUDIT, _audit_rows([e], now)[0])
        db.execute("DELETE FROM outbox WHERE msg_id = ?", (e.msg_id,))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return count / elapsed


async def store_writers(
    folder: Path, level: Synchronous, writers: int, count: int, payload: bytes
) -> tuple[float, int, int]:
    """Messages/s through the Store actor; also its commits and largest batch."""
    store = Store(folder / f"store-{level}-{writers}.db", synchronous=level)
    entries = _entries(count, payload, "store")
    shares = [entries[w::writers] for w in range(writers)]

    async def writer(mine: list[OutboxEntry]) -> None:
        for e in mine:
            await store.enqueue([e])
            await store.mark_delivered(e.msg_id)

    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        before = store.stats()
        started = time.perf_counter()
        async with trio.open_nursery() as writing:
            for mine in shares:
                writing.start_soon(writer, mine)
        elapsed = time.perf_counter() - started
        after = store.stats()
        nursery.cancel_scope.cancel()
    return count / elapsed, after.commits - before.commits, after.largest_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages per measurement")
    parser.add_argument("--payload", type=int, default=200, help="encoded payload bytes")
    args = parser.parse_args()
    payload = b"x" * args.payload
    count = args.messages

    print(f"store group commit: {count} messages of {args.payload} B, enqueue + mark_delivered")
    header = (
        f"{'sync':<7}{'case':<16}{'msgs/s':>10}{'vs raw 1 txn':>14}{'commits':>9}{'max batch':>11}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        folder = Path(tmp)
        for level in LEVELS:
            ceiling = raw_one_transaction(folder, level, count, payload)
            print(f"{level:<7}{'raw 1 txn':<16}{ceiling:>10.0f}{1.0:>14.3f}")
            unbatched = raw_transaction_per_operation(folder, level, count, payload)
            print(f"{level:<7}{'raw txn/msg':<16}{unbatched:>10.0f}{unbatched / ceiling:>14.3f}")
            for writers in WRITERS:
                rate, commits, largest = trio.run(
                    store_writers, folder, level, writers, count, payload
                )
                case = f"store {writers} wr"
                print(
                    f"{level:<7}{case:<16}{rate:>10.0f}{rate / ceiling:>14.3f}"
                    f"{commits:>9}{largest:>11}"
                )


if __name__ == "__main__":
    main()
