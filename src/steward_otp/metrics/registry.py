"""The metrics of one node: its own registry, the cache of the store's figures, and what
they are read from.

Every node has a :class:`NodeMetrics` with a private ``prometheus_client`` registry (never the
process-wide default one), so several nodes in one process each report their own figures.
The registry, and with it ``prometheus_client``, is made on first use: a node without
metrics never loads it. The store's queue figures need a query, so they are read by
:meth:`NodeMetrics.refresh` (the metrics process calls it periodically) and served from
that cache; everything else is read from the node (:class:`MetricsSource`) at scrape time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

from steward_otp.metrics.collector import NodeCollector
from steward_otp.store import OutboxState
from steward_otp.supervisors import ProcessSnapshot

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class StoreQueries(Protocol):
    """The store queries behind the store's figures (:class:`~steward_otp.store.Store`)."""

    async def queue_depths(self) -> Mapping[str, int]: ...

    async def counts(self) -> Mapping[OutboxState, int]: ...


class MetricsSource(Protocol):
    """What the metrics read from a node (:class:`steward_otp.node.Node` provides it).

    The processes' figures come from the tree snapshot, where each process publishes them
    in its live info (see :data:`SCALARS`). What is read from the node itself belongs to no
    one process: the messages accepted by its input path (``Node.accept_document``, shared by
    the inputs and the web view), the last hello of every node (node state the hello
    handler, the error log's known nodes and the ACLs share; a fleet's worth of it would
    swamp the tree view), and the store's queries (answered asynchronously, so they are
    refreshed by the metrics process, not read at scrape time).
    """

    @property
    def node_name(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def user_messages(self) -> int: ...

    @property
    def store(self) -> StoreQueries: ...

    def snapshot(self) -> ProcessSnapshot: ...

    def last_hellos(self) -> Mapping[str, float]: ...


@attrs.frozen
class StoreFigures:
    """The store's figures as of ``at`` (wall time): messages held per destination and state."""

    queue_depths: Mapping[str, int]
    """Messages still to deliver (queued or in flight) per destination node."""
    states: Mapping[str, int]
    """Messages held per state (queued, in_flight, failed, cancelled)."""
    at: float


class NodeMetrics:
    """The metrics of one node: its own registry, and the cache of the store's figures.

    ``registry`` holds the node's collector plus the standard process, platform and garbage
    collector collectors (those describe the whole Python process, which several embedded
    nodes share). Embedding code may register its own metrics on it; they are served with
    the node's. :meth:`render` gives the exposition text without any HTTP server.
    """

    def __init__(self, source: MetricsSource) -> None:
        self.source = source
        self.figures: StoreFigures | None = None
        self.destinations_seen: set[str] = set()
        self.scrapes = 0

    @functools.cached_property
    def registry(self) -> CollectorRegistry:
        """The node's registry, made (and prometheus_client imported) on first use."""
        from prometheus_client import (  # noqa: PLC0415
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        registry = CollectorRegistry(auto_describe=False)
        registry.register(NodeCollector(self))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        return registry

    async def refresh(self) -> StoreFigures:
        """Read the store's figures now and keep them for the next scrapes.

        Raises :class:`~steward_otp.store.StoreError` when the store is not running.
        Destinations keep being reported (at 0) once they have had messages.
        """
        depths = await self.source.store.queue_depths()
        counts = await self.source.store.counts()
        figures = StoreFigures(
            queue_depths=dict(depths),
            states={str(state): n for state, n in counts.items()},
            at=time.time(),
        )
        self.destinations_seen.update(depths)
        self.figures = figures
        return figures

    def render(self) -> bytes:
        """The node's metrics in the Prometheus text format, as ``/metrics`` serves them."""
        from prometheus_client import generate_latest  # noqa: PLC0415

        return generate_latest(self.registry)
