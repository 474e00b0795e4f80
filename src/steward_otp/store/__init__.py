"""The durable store: outbox, inbox de-duplication and audit log in one SQLite file.

Inside: :mod:`.api` (:class:`Store`, one coroutine per operation) on :mod:`.actor` (the actor
that owns the file and commits in groups); :mod:`.store_file` (where the file lives, and the
check before a node starts on it); :mod:`.schema` (the file format: tables, opening, errors);
:mod:`.records` (the values stored and returned); :mod:`.batches` (applying operations, one
transaction per batch) and the operations by topic, :mod:`.outbox_operations`,
:mod:`.outbox_queries`, :mod:`.inbox_operations` and :mod:`.audit`, with their helpers
:mod:`.fields` and :mod:`.sql`; :mod:`.repair` (check and repair a stopped node's file) and
:mod:`.cli` (``steward-otp store check|repair``).

Import the public names from here. They load on first use, each from its own module, so
importing ``steward_otp.store.schema``, ``steward_otp.store.repair`` or a name that is not
:class:`Store` pulls in neither Trio nor the actor.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward_otp.store.actor import StoreStats
    from steward_otp.store.api import Store
    from steward_otp.store.records import (
        ACTIVE_STATES,
        DEFAULT_PURGE_STATES,
        OUTBOX_STATE_NAMES,
        AuditOutcome,
        AuditRecord,
        Direction,
        InboundRow,
        OutboxEntry,
        OutboxRow,
        OutboxState,
    )
    from steward_otp.store.schema import StoreDamaged, StoreError, StoreFull, Synchronous
    from steward_otp.store.store_file import (
        DB_FILE_NAME,
        StoreUnusable,
        check_store_file,
        store_path,
    )

__all__ = [
    "ACTIVE_STATES",
    "DB_FILE_NAME",
    "DEFAULT_PURGE_STATES",
    "OUTBOX_STATE_NAMES",
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

_HOME_MODULE: dict[str, str] = {
    "ACTIVE_STATES": "records",
    "DB_FILE_NAME": "store_file",
    "DEFAULT_PURGE_STATES": "records",
    "OUTBOX_STATE_NAMES": "records",
    "AuditOutcome": "records",
    "AuditRecord": "records",
    "Direction": "records",
    "InboundRow": "records",
    "OutboxEntry": "records",
    "OutboxRow": "records",
    "OutboxState": "records",
    "Store": "api",
    "StoreDamaged": "schema",
    "StoreError": "schema",
    "StoreFull": "schema",
    "StoreStats": "actor",
    "StoreUnusable": "store_file",
    "Synchronous": "schema",
    "check_store_file": "store_file",
    "store_path": "store_file",
}
"""The module of each public name, loaded on its first use."""


def __getattr__(name: str) -> Any:
    home = _HOME_MODULE.get(name)
    if home is None:
        raise AttributeError(f"module 'steward_otp.store' has no attribute {name!r}")
    value = getattr(import_module(f"steward_otp.store.{home}"), name)
    globals()[name] = value
    return value
