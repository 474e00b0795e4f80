"""Prometheus metrics of one node: a registry of its own, and the process serving ``/metrics``.

Every node has a :class:`NodeMetrics` with a private ``prometheus_client`` registry (never the
process-wide default one), so several nodes in one process each report their own figures.
Nothing on the message path is instrumented: the figures are read when a scrape arrives,
from one snapshot of the supervision tree, where each process publishes the counters it
keeps in its live info (``node/outbound/router``: the outbox's delivery stats;
``node/errors``: the error kernel's; ``node/bridge``: the connection's; ``node/store``: its
commits; ``node/inbound/*``: each subscriber's). Those figures are also what
``steward-otp tree`` shows. A process that is not running publishes nothing, so its samples
are left out of that scrape. The store's queue figures (messages held per destination and
per state) need a query, so they are refreshed every ``refresh_interval`` seconds by the
metrics process and served from that cache.

:class:`MetricsServer` is the supervised process ``node/metrics``; the node starts it only
when ``prom_host_and_port`` is set. It serves ``GET /metrics`` over HTTP (hypercorn on Trio)
and stops with the tree. An address it cannot listen on fails its start with an error naming
the setting, so a node with a mistyped address stops at start-up instead of running blind.

The metric names and what each means are listed in ``docs/operations.md``.

One module per part: :mod:`~steward_otp.metrics.registry` (:class:`NodeMetrics`: the
registry, the store figures' cache, and what it reads from a node),
:mod:`~steward_otp.metrics.collector` (every metric and how a scrape builds it from the tree
snapshot) and :mod:`~steward_otp.metrics.server` (the ``/metrics`` ASGI application and
:class:`MetricsServer`). None of them imports ``prometheus_client`` or ``hypercorn`` at
import time.
"""

from steward_otp.metrics.collector import NodeCollector
from steward_otp.metrics.registry import MetricsSource, NodeMetrics, StoreFigures, StoreQueries
from steward_otp.metrics.server import METRICS_PATH, MetricsListenError, MetricsServer, metrics_app

__all__ = [
    "METRICS_PATH",
    "MetricsListenError",
    "MetricsServer",
    "MetricsSource",
    "NodeCollector",
    "NodeMetrics",
    "StoreFigures",
    "StoreQueries",
    "metrics_app",
]
