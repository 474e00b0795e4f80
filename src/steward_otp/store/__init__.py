"""The durable store: outbox, inbox de-duplication and audit log in one SQLite file.

Inside: :mod:`.actor` (:class:`Store`, the actor that owns the file and commits in groups),
:mod:`.schema` (its sans-IO core: tables, operation records, errors), :mod:`.repair`
(check and repair a stopped node's file) and :mod:`.cli` (``steward-otp store check|repair``).

Import the public names from here. They load on first use, so importing
``steward_otp.store.schema`` or ``steward_otp.store.repair`` pulls in neither Trio nor the
actor.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward_otp.store.actor import (
        ACTIVE_STATES,
        DB_FILE_NAME,
        DEFAULT_PURGE_STATES,
        AuditOutcome,
        AuditRecord,
        Direction,
        InboundRow,
        OutboxEntry,
        OutboxRow,
        OutboxState,
        Store,
        StoreDamaged,
        StoreError,
        StoreFull,
        StoreStats,
        StoreUnusable,
        Synchronous,
        check_store_file,
        store_path,
    )

__all__ = [
    "ACTIVE_STATES",
    "DB_FILE_NAME",
    "DEFAULT_PURGE_STATES",
    "AuditOutcome",
    "AuditRecord",
    "Direction",
    "InboundRow",
    "OutboxEntry",
    "OutboxRow",
    "OutboxState",
    "Store",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreStats",
    "StoreUnusable",
    "Synchronous",
    "check_store_file",
    "store_path",
]

_EXPORTS = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'steward_otp.store' has no attribute {name!r}")
    value = getattr(import_module("steward_otp.store.actor"), name)
    globals()[name] = value
    return value
