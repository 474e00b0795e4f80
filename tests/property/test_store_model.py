"""The store behaves like a plain dict model, batch by batch, restart by restart.

Two angles: a hypothesis state machine drives the sans-IO core (``apply_batch`` on a real
SQLite file, reopened at random) against the model; and an async test drives the running
actor from many concurrent tasks, checking that group commit gives every caller exactly the
answers it would get alone.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from steward_otp.store import OutboxEntry, OutboxState, Store
from steward_otp.store.audit import PruneAudit, ReadAudit
from steward_otp.store.batches import OperationFailed, apply_batch
from steward_otp.store.inbox_operations import (
    AcceptInbound,
    ListUnfinishedInbound,
    MarkInboundDone,
    PruneDedupe,
)
from steward_otp.store.outbox_operations import (
    Cancel,
    Enqueue,
    MarkDelivered,
    MarkFailed,
    MarkInFlight,
    Purge,
    RecordAttempt,
    RecoverInFlight,
    Retry,
)
from steward_otp.store.outbox_queries import CountOutbox, ListOutbox, QueueDepths
from steward_otp.store.records import ACTIVE_STATES
from steward_otp.store.schema import open_database

MSG_IDS = [f"m{i}" for i in range(16)]
NODES = ["ship1", "ship2", "ship3"]
METHODS = ["REQCliCommand", "REQPing"]
HELD = [OutboxState.QUEUED, OutboxState.FAILED, OutboxState.CANCELLED]


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


@attrs.define
class Held:
    order: int
    entry: OutboxEntry
    state: OutboxState
    attempts: int
    not_before: float
    updated_at: float
    reason: str | None

    def view(self) -> tuple[Any, ...]:
        e = self.entry
        return (
            e.msg_id,
            e.to_node,
            e.method,
            e.payload,
            self.state,
            self.attempts,
            e.created_at,
            self.not_before,
            self.updated_at,
            self.reason,
        )


@attrs.define
class Model:
    """What the store should hold, in dicts and lists."""

    outbox: dict[str, Held] = attrs.Factory(dict)
    next_order: int = 0
    # (direction, msg_id, peer, method, outcome, attempts, payload, created_at, recorded_at, reason)
    audit: list[tuple[Any, ...]] = attrs.Factory(list)
    inbox: dict[str, dict[str, Any]] = attrs.Factory(dict)

    def ordered(self) -> list[Held]:
        return sorted(self.outbox.values(), key=lambda held: held.order)

    def _audit_out(self, held: Held, outcome: str, now: float, reason: str | None) -> None:
        e = held.entry
        self.audit.append(
            (
                *("out", e.msg_id, e.to_node, e.method, outcome, held.attempts, e.payload),
                *(e.created_at, now, reason),
            )
        )

    def apply(self, op: Any, now: float) -> Any:
        match op:
            case Enqueue(entries=entries):
                new = []
                for e in entries:
                    audited = any(a[0] == "out" and a[1] == e.msg_id for a in self.audit)
                    if e.msg_id in self.outbox or audited:
                        continue
                    self.outbox[e.msg_id] = Held(
                        self.next_order, e, OutboxState.QUEUED, 0, e.not_before, now, None
                    )
                    self.next_order += 1
                    new.append(e.msg_id)
                return new
            case MarkInFlight(msg_id=msg_id):
                held = self.outbox.get(msg_id)
                if held is None or held.state not in ACTIVE_STATES:
                    return False
                held.state, held.updated_at = OutboxState.IN_FLIGHT, now
                return True
            case RecordAttempt(msg_id=msg_id, not_before=not_before):
                held = self.outbox.get(msg_id)
                if held is None or held.state not in ACTIVE_STATES:
                    return False
                held.attempts += 1
                held.updated_at = now
                if not_before is not None:
                    held.not_before = not_before
                return True
            case MarkDelivered(msg_id=msg_id):
                held = self.outbox.pop(msg_id, None)
                if held is None:
                    return False
                self._audit_out(held, "delivered", now, None)
                return True
            case MarkFailed(msg_id=msg_id, reason=reason) | Cancel(msg_id=msg_id, reason=reason):
                held = self.outbox.get(msg_id)
                if held is None or held.state not in ACTIVE_STATES:
                    return False
                final = OutboxState.FAILED if isinstance(op, MarkFailed) else OutboxState.CANCELLED
                held.state, held.reason, held.updated_at = final, reason, now
                self._audit_out(held, str(final), now, reason)
                return True
            case Retry(msg_id=msg_id, not_before=not_before):
                held = self.outbox.get(msg_id)
                if held is None or held.state not in (OutboxState.FAILED, OutboxState.CANCELLED):
                    return False
                held.state, held.attempts, held.reason = OutboxState.QUEUED, 0, None
                held.not_before = now if not_before is None else not_before
                held.updated_at = now
                return True
            case Purge(to_node=to_node, older_than_seconds=older, states=states):
                doomed = [
                    held
                    for held in self.ordered()
                    if held.state in states
                    and (to_node is None or held.entry.to_node == to_node)
                    and (older is None or held.entry.created_at <= now - older)
                ]
                for held in doomed:
                    self._audit_out(held, "purged", now, held.reason)
                    del self.outbox[held.entry.msg_id]
                return len(doomed)
            case RecoverInFlight():
                stuck = [h for h in self.outbox.values() if h.state is OutboxState.IN_FLIGHT]
                for held in stuck:
                    held.state, held.updated_at = OutboxState.QUEUED, now
                return len(stuck)
            case ListOutbox(to_node=to_node, states=states, limit=limit, after_seq=0):
                rows = [
                    held.view()
                    for held in self.ordered()
                    if (to_node is None or held.entry.to_node == to_node)
                    and (states is None or held.state in states)
                ]
                return rows if limit is None else rows[:limit]
            case CountOutbox(to_node=to_node):
                counts = dict.fromkeys(OutboxState, 0)
                for held in self.outbox.values():
                    if to_node is None or held.entry.to_node == to_node:
                        counts[held.state] += 1
                return counts
            case QueueDepths():
                depths: dict[str, int] = {}
                for held in self.outbox.values():
                    if held.state in ACTIVE_STATES:
                        depths[held.entry.to_node] = depths.get(held.entry.to_node, 0) + 1
                return dict(sorted(depths.items()))
            case AcceptInbound(msg_id=msg_id, from_node=from_node, method=method, payload=data):
                if msg_id in self.inbox:
                    return False
                self.inbox[msg_id] = {
                    "from": from_node,
                    "method": method,
                    "payload": data,
                    "received_at": now,
                    "done": False,
                }
                return True
            case MarkInboundDone(msg_id=msg_id, outcome=outcome, reason=reason):
                seen = self.inbox.get(msg_id)
                if seen is None or seen["done"]:
                    return False
                seen["done"] = True
                self.audit.append(
                    (
                        *("in", msg_id, seen["from"], seen["method"], outcome, None),
                        *(seen["payload"], seen["received_at"], now, reason),
                    )
                )
                return True
            case ListUnfinishedInbound(limit=None):
                return [
                    (msg_id, seen["from"], seen["method"], seen["payload"], seen["received_at"])
                    for msg_id, seen in self.inbox.items()
                    if not seen["done"]
                ]
            case PruneDedupe(cutoff=cutoff):
                old = [k for k, seen in self.inbox.items() if seen["received_at"] < cutoff]
                for msg_id in old:
                    del self.inbox[msg_id]
                return len(old)
            case PruneAudit(cutoff=cutoff):
                before = len(self.audit)
                self.audit = [a for a in self.audit if a[8] >= cutoff]
                return before - len(self.audit)
            case ReadAudit(msg_id=None, limit=None, after_seq=0):
                return list(self.audit)
        raise AssertionError(f"the model does not know {op!r}")


def observed(result: Any) -> Any:
    """A store result in the model's shape (rows as tuples, seq dropped)."""
    assert not isinstance(result, OperationFailed), result
    if isinstance(result, list) and result and hasattr(result[0], "seq"):
        return [_row_view(row) for row in result]
    return result


def _row_view(row: Any) -> tuple[Any, ...]:
    if hasattr(row, "state"):
        return (
            row.msg_id,
            row.to_node,
            row.method,
            row.payload,
            row.state,
            row.attempts,
            row.created_at,
            row.not_before,
            row.updated_at,
            row.reason,
        )
    if hasattr(row, "direction"):
        return (
            str(row.direction),
            row.msg_id,
            row.peer_node,
            row.method,
            row.outcome,
            row.attempts,
            row.payload,
            row.created_at,
            row.recorded_at,
            row.reason,
        )
    return (row.msg_id, row.from_node, row.method, row.payload, row.received_at)


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

msg_ids = st.sampled_from(MSG_IDS)
nodes = st.sampled_from(NODES)
# Whole hours near the start time (100 h): exact floats that meet the age cut-offs exactly.
times = st.sampled_from([0, 24, 76, 98, 99, 100, 101, 124]).map(lambda hours: hours * 3600.0)


def entries(msg_id: st.SearchStrategy[str] = msg_ids) -> st.SearchStrategy[OutboxEntry]:
    return st.builds(
        OutboxEntry,
        msg_id=msg_id,
        to_node=nodes,
        method=st.sampled_from(METHODS),
        payload=st.binary(max_size=8),
        created_at=times,
        not_before=times,
    )


@attrs.frozen
class Context:
    """What an operation drawn in advance may depend on when its batch is built."""

    now: float
    held: dict[str, OutboxState]  # the outbox, so that transitions mostly hit real messages
    unfinished: list[str]  # inbound ids accepted and not done yet


Template = Callable[[Context], Any]


@attrs.frozen
class Pick:
    """An id chosen when the batch is built: mostly one held in a state the operation
    applies to, sometimes any id at all (to exercise the refusals)."""

    held: bool
    index: int

    def resolve(self, context: Context, states: frozenset[OutboxState]) -> str:
        fitting = [msg_id for msg_id, state in context.held.items() if state in states]
        return self._choose(fitting)

    def resolve_inbound(self, context: Context) -> str:
        return self._choose(context.unfinished)

    def _choose(self, fitting: list[str]) -> str:
        pool = fitting if self.held and fitting else MSG_IDS
        return pool[self.index % len(pool)]


picks = st.builds(Pick, st.sampled_from([True, True, True, False]), st.integers(0, 63))
_reasons = st.sampled_from(["timeout", "max retries reached", "operator"])


def _constant(op: st.SearchStrategy[Any]) -> st.SearchStrategy[Template]:
    return op.map(lambda op: lambda context: op)


def _on_picked(
    operation: type[Any], states: Iterable[OutboxState], *more: st.SearchStrategy[Any]
) -> st.SearchStrategy[Template]:
    fitting = frozenset(states)
    return st.tuples(picks, *more).map(
        lambda drawn: lambda context: operation(drawn[0].resolve(context, fitting), *drawn[1:])
    )


def _cutoff(operation: type[Any]) -> st.SearchStrategy[Template]:
    ages = st.sampled_from([86400.0, 3600.0, 0.0])
    return ages.map(lambda age: lambda context: operation(context.now - age))


_transitions = st.one_of(
    _on_picked(MarkInFlight, ACTIVE_STATES),
    _on_picked(RecordAttempt, ACTIVE_STATES, st.none() | times),
    _on_picked(MarkDelivered, OutboxState),
    _on_picked(MarkFailed, ACTIVE_STATES, _reasons),
    _on_picked(Cancel, ACTIVE_STATES, _reasons),
    _on_picked(Retry, [OutboxState.FAILED, OutboxState.CANCELLED], st.none() | times),
)
_enqueues = _constant(st.builds(Enqueue, st.lists(entries(), min_size=1, max_size=3)))
OPERATIONS: st.SearchStrategy[Template] = st.sampled_from(
    # Repeated kinds weigh more: message lifecycles need long chains of these.
    [
        *[_enqueues] * 3,
        *[_transitions] * 6,
        _constant(
            st.builds(
                Purge,
                st.none() | nodes,
                st.none() | st.sampled_from([0.0, 3600.0, 86400.0]),
                st.sets(st.sampled_from(list(OutboxState)), min_size=1),
            )
        ),
        _constant(
            st.one_of(
                st.builds(
                    ListOutbox,
                    st.none() | nodes,
                    st.none() | st.sets(st.sampled_from(list(OutboxState))),
                    st.none() | st.integers(1, 4),
                ),
                st.builds(CountOutbox, st.none() | nodes),
                st.just(QueueDepths()),
                st.just(ListUnfinishedInbound()),
            )
        ),
        _constant(
            st.builds(
                AcceptInbound, msg_ids, nodes, st.sampled_from(METHODS), st.binary(max_size=8)
            )
        ),
        st.tuples(picks, st.sampled_from(["ok", "error"]), st.none() | _reasons).map(
            lambda drawn: (
                lambda context: MarkInboundDone(drawn[0].resolve_inbound(context), *drawn[1:])
            )
        ),
        _cutoff(PruneDedupe),
        _cutoff(PruneAudit),
    ]
).flatmap(lambda kind: kind)


# ---------------------------------------------------------------------------------------------
# The sans-IO core against the model
# ---------------------------------------------------------------------------------------------


class StoreMatchesModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="store-model-"))
        self.path = self.folder / "steward.db"
        self.db = open_database(self.path, synchronous="NORMAL")
        self.model = Model()
        self.now = 100 * 3600.0

    @rule(
        templates=st.lists(OPERATIONS, min_size=1, max_size=6),
        seconds=st.sampled_from([0.0, 0.0, 3600.0, 86400.0]),
        restart=st.sampled_from([False] * 7 + [True]),
    )
    def time_passes_then_a_batch_runs(
        self, templates: list[Template], seconds: float, restart: bool
    ) -> None:
        self.now += seconds
        if restart:
            self.db.close()
            self.db = open_database(self.path, synchronous="NORMAL")
            (recovered,) = apply_batch(self.db, [RecoverInFlight()], self.now)
            assert recovered == self.model.apply(RecoverInFlight(), self.now)
        context = Context(
            self.now,
            {msg_id: held.state for msg_id, held in self.model.outbox.items()},
            [msg_id for msg_id, seen in self.model.inbox.items() if not seen["done"]],
        )
        batch = [template(context) for template in templates]
        results = apply_batch(self.db, batch, self.now)
        for op, result in zip(batch, results, strict=True):
            assert observed(result) == self.model.apply(op, self.now), op

    @invariant()
    def tables_match(self) -> None:
        outbox, audit, unfinished = apply_batch(
            self.db, [ListOutbox(), ReadAudit(), ListUnfinishedInbound()], self.now
        )
        assert observed(outbox) == self.model.apply(ListOutbox(), self.now)
        assert observed(audit) == self.model.apply(ReadAudit(), self.now)
        assert observed(unfinished) == self.model.apply(ListUnfinishedInbound(), self.now)
        seen = {row[0] for row in self.db.execute("SELECT msg_id FROM inbox")}
        assert seen == set(self.model.inbox)

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.folder, ignore_errors=True)


StoreMatchesModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMatchesModel = StoreMatchesModel.TestCase


# ---------------------------------------------------------------------------------------------
# The running actor: concurrent callers, group commit, a restart in the middle
# ---------------------------------------------------------------------------------------------


def _task_operations(task: int) -> st.SearchStrategy[list[Any]]:
    """Operations of one task on ids only it uses, so tasks cannot see each other's effects."""
    own_ids = st.sampled_from([f"t{task}-{i}" for i in range(3)])
    return st.lists(
        st.one_of(
            st.builds(lambda e: Enqueue([e]), entries(own_ids)),
            st.builds(MarkInFlight, own_ids),
            st.builds(RecordAttempt, own_ids),
            st.builds(MarkDelivered, own_ids),
            st.builds(MarkFailed, own_ids, st.just("max retries reached")),
            st.builds(Cancel, own_ids),
            st.builds(Retry, own_ids, times),
            st.builds(AcceptInbound, own_ids, nodes, st.just("REQPing"), st.binary(max_size=4)),
            st.builds(MarkInboundDone, own_ids, st.just("ok")),
        ),
        max_size=12,
    )


async def _call(store: Store, op: Any) -> Any:
    """The public API call that corresponds to an operation record."""
    match op:
        case Enqueue(entries=entries):
            return await store.enqueue(entries)
        case MarkInFlight(msg_id=msg_id):
            return await store.mark_in_flight(msg_id)
        case RecordAttempt(msg_id=msg_id, not_before=not_before):
            return await store.record_attempt(msg_id, not_before=not_before)
        case MarkDelivered(msg_id=msg_id):
            return await store.mark_delivered(msg_id)
        case MarkFailed(msg_id=msg_id, reason=reason):
            return await store.mark_failed(msg_id, reason)
        case Cancel(msg_id=msg_id, reason=reason):
            return await store.cancel(msg_id, reason)
        case Retry(msg_id=msg_id, not_before=not_before):
            return await store.retry(msg_id, not_before=not_before)
        case AcceptInbound(msg_id=msg_id, from_node=f, method=m, payload=p):
            return await store.accept_inbound(msg_id, f, m, p)
        case MarkInboundDone(msg_id=msg_id, outcome=outcome, reason=reason):
            return await store.mark_inbound_done(msg_id, outcome, reason)
    raise AssertionError(op)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(_task_operations(0), min_size=1, max_size=6).flatmap(
        lambda tasks: st.tuples(*(_task_operations(i) for i in range(len(tasks))))
    ),
    after=st.lists(_task_operations(0), min_size=1, max_size=6).flatmap(
        lambda tasks: st.tuples(*(_task_operations(i) for i in range(len(tasks))))
    ),
)
async def test_concurrent_callers_get_the_answers_they_would_get_alone(
    before: tuple[list[Any], ...], after: tuple[list[Any], ...]
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="store-actor-"))
    now = 100 * 3600.0
    models = [Model() for _ in range(max(len(before), len(after)))]
    try:
        for phase in (before, after):
            store = Store(folder / "steward.db", synchronous="NORMAL", clock=lambda: now)

            async def caller(task: int, ops: list[Any], store: Store = store) -> None:
                for op in ops:
                    assert await _call(store, op) == models[task].apply(op, now), op
                    await trio.lowlevel.checkpoint()  # let other callers interleave

            async with trio.open_nursery() as nursery:
                await nursery.start(store.run)
                for model in models:  # what the restart did to each task's messages
                    model.apply(RecoverInFlight(), now)
                async with trio.open_nursery() as callers:
                    for task, ops in enumerate(phase):
                        callers.start_soon(caller, task, ops)
                pending = await store.pending()
                nursery.cancel_scope.cancel()

            # Pending is oldest first across all tasks; within a task, in the model's order.
            for task, model in enumerate(models):
                mine = [row.msg_id for row in pending if row.msg_id.startswith(f"t{task}-")]
                expected = [h.entry.msg_id for h in model.ordered() if h.state in ACTIVE_STATES]
                assert mine == expected
            assert [row.seq for row in pending] == sorted(row.seq for row in pending)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
