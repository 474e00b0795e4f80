"""An in-memory broker and transport: NATS subject semantics without a server, plus faults.

:class:`LoopbackBroker` stands for one NATS server; each :class:`LoopbackTransport` made on it
stands for one client connection (one node's bridge). Several nodes in one Trio run share a
broker and talk to each other as they would over NATS:

* **Subjects** — dot-separated, non-empty tokens. In a subscription ``*`` matches exactly one
  token and a final ``>`` one or more trailing tokens; see :func:`subject_matches`.
* **Queue groups** — subscriptions with the same non-empty queue name on the same subject
  pattern form a group. Each message goes to every plain subscription that matches and to
  exactly one member of each matching group (round-robin, so every member gets its share).
* **Delivery** is synchronous: ``publish_nowait`` hands the message to each receiving
  subscription's channel (:meth:`Subscription.offer`) before it returns. So one publisher's
  messages reach a subscription in the order they were published, a subscription is in place
  as soon as ``subscribe`` returns, and ``flush`` only waits for the broker to be up. A full
  channel drops the message and counts it (``Subscription.dropped``), never blocking anyone.
* **Request/reply** — each transport has a private reply inbox. A message with a reply subject
  that no subscription matches makes the broker answer on the reply subject with a "no
  responders" notice (status 503, as nats-server does); ``request`` still waits out its
  timeout and then raises :class:`RequestTimeout` with ``no_responders=True``, as
  :class:`~steward_otp.bridge.NatsBridge` does.
* **Outages** — :meth:`LoopbackBroker.stop` takes the broker down, :meth:`LoopbackBroker.start`
  brings it back. While it is down, running transports report ``RECONNECTING``; a publish is
  **lost** (counted in the transport's ``publish_errors`` and in ``broker.lost``), as with
  nats-py when its reconnect buffer is full or disabled — unless the transport was made with
  ``reconnect_buffer=N``: then up to N publishes are kept and delivered, in order, when the
  broker returns (nats-py's pending buffer). Requests time out (``no_responders=False``);
  ``flush`` waits for the return. Subscriptions stay registered, as a NATS client
  re-subscribes after reconnecting.
* **Limits** — the broker refuses a payload larger than its ``max_payload`` (counted in
  the transport's ``publish_errors``, as nats-py refuses it); a transport reports the
  broker's ``max_payload`` once it has been connected, its own configured one before.
* **Faults** — :attr:`LoopbackBroker.faults` (:class:`Faults`) drops, duplicates, delays or
  reorders chosen messages on their way into the broker.

Where a transport that is not running differs from NatsBridge (on purpose, to be lenient):
``subscribe`` and ``publish`` work before ``run`` and after it ended, and take effect at once
(NatsBridge queues them until it is connected).

Everything runs in one Trio run and one thread. Delayed messages are delivered by a Trio system
task the broker spawns on demand, so delays follow the run's clock, including
``trio.testing.MockClock`` and pytest-trio's ``autojump_clock``.

One module per part, each importing only those before it:

* :mod:`~steward_otp.loopback.subjects` — which subjects and patterns are valid, and which
  match (:func:`subject_matches`).
* :mod:`~steward_otp.loopback.faults` — :class:`Faults` and its :class:`FaultRule` s.
* :mod:`~steward_otp.loopback.broker` — :class:`LoopbackBroker`: routing, outages, delays.
* :mod:`~steward_otp.loopback.transport` — :class:`LoopbackTransport`, one connection.

Import the names from this package.
"""

from steward_otp.loopback.broker import LoopbackBroker as LoopbackBroker
from steward_otp.loopback.faults import FaultKind as FaultKind
from steward_otp.loopback.faults import FaultRule as FaultRule
from steward_otp.loopback.faults import Faults as Faults
from steward_otp.loopback.faults import Predicate as Predicate
from steward_otp.loopback.subjects import is_valid_pattern as is_valid_pattern
from steward_otp.loopback.subjects import is_valid_subject as is_valid_subject
from steward_otp.loopback.subjects import subject_matches as subject_matches
from steward_otp.loopback.transport import LoopbackClosed as LoopbackClosed
from steward_otp.loopback.transport import LoopbackTransport as LoopbackTransport

__all__ = [
    "FaultKind",
    "FaultRule",
    "Faults",
    "LoopbackBroker",
    "LoopbackClosed",
    "LoopbackTransport",
    "Predicate",
    "is_valid_pattern",
    "is_valid_subject",
    "subject_matches",
]
