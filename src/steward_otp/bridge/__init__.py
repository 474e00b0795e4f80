"""The NATS bridge: the one way a node reaches a real NATS broker (nats-py on trio-asyncio).

``from steward_otp.bridge import NatsBridge, BridgeSettings``: a :class:`NatsBridge` is a
:class:`~steward_otp.transport.Transport`, the node's ``bridge`` process. Nothing outside
this package imports ``nats`` or ``trio_asyncio``.

One module per part:

* :mod:`~steward_otp.bridge.actor` -- :class:`NatsBridge`: the handle methods, the pump
  carrying a batch of commands per crossing into asyncio, the connection and its state
  (the guarantees are listed there);
* :mod:`~steward_otp.bridge.settings` -- :class:`BridgeSettings` and the NATS client options
  made from them (servers, reconnect jitter, credentials, TLS);
* :mod:`~steward_otp.bridge.commands` -- the commands the handle queues for the pump;
* :mod:`~steward_otp.bridge.deliveries` -- the nats-py callbacks: replies matched to their
  requests, subscription messages handed to their Trio channels;
* :mod:`~steward_otp.bridge.errors` -- :class:`BridgeClosed` and the other errors, and the
  sparing report of the broker refusing the node.
"""

from steward_otp.bridge.actor import NatsBridge
from steward_otp.bridge.errors import BridgeClosed, BridgeError
from steward_otp.bridge.settings import BridgeSettings
from steward_otp.transport import (
    BridgeBusy,
    ConnectionState,
    InboundMessage,
    RequestTimeout,
    Subscription,
)

__all__ = [
    "BridgeBusy",
    "BridgeClosed",
    "BridgeError",
    "BridgeSettings",
    "ConnectionState",
    "InboundMessage",
    "NatsBridge",
    "RequestTimeout",
    "Subscription",
]
