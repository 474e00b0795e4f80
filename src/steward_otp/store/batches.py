"""Applying operations to the store file: one transaction per batch, one result per operation.

This is the sans-IO core of :mod:`steward_otp.store`: plain functions and frozen operation
records that act on a :class:`sqlite3.Connection`, with no Trio and no threads, so the state
machine can be tested synchronously (and hammered by hypothesis) without the actor around it.
The operations are defined by topic: :mod:`.outbox_operations`, :mod:`.outbox_queries`,
:mod:`.inbox_operations` and :mod:`.audit`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Protocol, TypeVar

import attrs

from steward_otp.store.schema import rollback_quietly

T_co = TypeVar("T_co", covariant=True)


class Operation(Protocol[T_co]):
    """One request to the store: reads or changes the tables inside a batch's transaction."""

    def apply(self, db: sqlite3.Connection, now: float) -> T_co:
        """Run against ``db`` inside an open transaction; ``now`` is the batch's wall time."""
        ...


@attrs.frozen
class OperationFailed:
    """The result slot of an operation that raised; its changes were rolled back alone."""

    operation: str
    error: Exception


# Errors that mean "this one operation is bad" (constraint violations, unbindable values),
# not "the database is in trouble"; anything else aborts the whole batch.
_OPERATION_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    ValueError,
    TypeError,
    OverflowError,
)


def apply_batch(
    db: sqlite3.Connection, operations: Sequence[Operation[object]], now: float
) -> list[object]:
    """Apply ``operations`` in order in ONE transaction and commit it (one fsync in FULL mode).

    Returns one result per operation; an operation that raises one of the "bad request"
    errors is rolled back alone and its slot holds :class:`OperationFailed`, while the others
    still commit. Any other error -- I/O, disk full, a failing COMMIT -- rolls the whole batch
    back and propagates: nothing of the batch is durable.
    """
    try:
        return _apply_in_transaction(db, operations, now, isolate=False)
    except _OPERATION_ERRORS:
        # Rare (a bug or a constraint the validators missed): replay the whole batch with one
        # savepoint per operation. Operations are deterministic given the file and ``now``,
        # so the replay sees what the first pass saw. Savepoints for every batch would cost
        # about a third of the throughput, for nothing in the common case.
        return _apply_in_transaction(db, operations, now, isolate=True)


def _apply_in_transaction(
    db: sqlite3.Connection, operations: Sequence[Operation[object]], now: float, *, isolate: bool
) -> list[object]:
    results: list[object] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for operation in operations:
            if not isolate:
                results.append(operation.apply(db, now))
                continue
            db.execute("SAVEPOINT operation")
            try:
                result = operation.apply(db, now)
            except _OPERATION_ERRORS as exc:
                db.execute("ROLLBACK TO operation")
                db.execute("RELEASE operation")
                results.append(OperationFailed(type(operation).__name__, exc))
            else:
                db.execute("RELEASE operation")
                results.append(result)
        db.execute("COMMIT")
    except BaseException:
        rollback_quietly(db)
        raise
    return results
