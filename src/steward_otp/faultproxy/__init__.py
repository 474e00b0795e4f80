"""A fault-injecting TCP proxy: latency, jitter, a bandwidth cap, black holes and resets.

It sits between nodes and the broker and makes a perfect loopback link behave like a bad
real one, for tests (``tests/chaos/``) and for operators who want to see what a node does
on a satellite link before it is on one::

    python -m steward_otp.faultproxy --listen 127.0.0.1:4333 --upstream 127.0.0.1:4222 \\
        --profile satellite --seed 1

Nodes then use ``--broker-address 127.0.0.1:4333``. While it runs, ``SIGUSR1`` resets every
connection and ``SIGUSR2`` starts an outage of ``--manual-outage`` seconds. See
``docs/chaos.md`` for the profiles and the options.

In a Trio program or test::

    proxy = FaultProxy(("127.0.0.1", nats_port), profile=SATELLITE.scaled(0.1), seed=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)        # listens on proxy.port
        ...
        proxy.start_outage(5)                   # black hole from now on, for 5 s
        proxy.reset_all()                       # RST both ends of every connection

Guarantees (each direction of each connection separately, "up" = client to upstream):

* **Bytes are never changed, reordered or dropped on an open connection.** What the proxy
  delivers is a prefix of what it read, in order. The one mode that discards bytes (an
  outage in ``drop`` mode) resets every connection that lost bytes when the outage ends, so
  no peer ever reads a stream with a hole in it.
* **Latency.** A byte is delivered no earlier than ``latency`` seconds, plus its chunk's
  jitter sample (uniform in ``[0, jitter]``), after the proxy read it. Jitter never reorders:
  a chunk is never delivered before the one read before it.
* **Bandwidth.** With a cap of ``bandwidth`` bytes/s, the bytes delivered in one direction,
  over all connections of the proxy together (one physical link), in any interval of ``T``
  seconds are at most ``bandwidth * T + burst`` (``burst`` is a few hundredths of a second's
  worth, see :func:`quantum_for`).
* **Outage (black hole).** While one lasts nothing is delivered and no connection is closed
  by the proxy. In ``hold`` mode (a link that is down while TCP keeps retrying) the bytes
  read meanwhile are delivered after it, in order, within the bandwidth cap; in ``drop``
  mode they are discarded (see above). A connection accepted during an outage is connected
  upstream only when it ends.
* **Reset.** :meth:`FaultProxy.reset_all` (and a profile's random resets) close both sockets
  of every connection with ``SO_LINGER`` 0, so both peers see a connection reset, as when a
  NAT box or a modem drops its state. An upstream that refuses the connection (broker down)
  resets the client too.
* **Determinism.** The schedule of outages and resets depends only on the profile and the
  seed; the jitter samples of a connection only on the seed, the connection's number (1 for
  the first accepted) and the direction. Operating-system timing is not under its control,
  so a replay repeats the same faults at the same times, not the same interleaving.
* **Bounded.** At most ``max_buffered`` bytes (default 16 MiB) wait in the proxy per
  connection and direction; beyond that it stops reading from the sender (TCP back-pressure,
  as a full modem buffer does).

One module per part, each importing only those before it:

* :mod:`~steward_otp.faultproxy.profiles` — :class:`Profile` and the named profiles.
* :mod:`~steward_otp.faultproxy.bandwidth` — :class:`TokenBucket`, :func:`quantum_for`.
* :mod:`~steward_otp.faultproxy.connection` — one relayed connection's buffers and reset.
* :mod:`~steward_otp.faultproxy.proxy` — :class:`FaultProxy`, its stats and fault events.
* :mod:`~steward_otp.faultproxy.command_line` — :func:`main`, run by ``python -m``.

Import the names from this package.
"""

from steward_otp.faultproxy.bandwidth import TokenBucket as TokenBucket
from steward_otp.faultproxy.bandwidth import quantum_for as quantum_for
from steward_otp.faultproxy.command_line import main as main
from steward_otp.faultproxy.profiles import FLAKY as FLAKY
from steward_otp.faultproxy.profiles import PERFECT as PERFECT
from steward_otp.faultproxy.profiles import PROFILES as PROFILES
from steward_otp.faultproxy.profiles import SATELLITE as SATELLITE
from steward_otp.faultproxy.profiles import OutageMode as OutageMode
from steward_otp.faultproxy.profiles import Profile as Profile
from steward_otp.faultproxy.proxy import FaultEvent as FaultEvent
from steward_otp.faultproxy.proxy import FaultProxy as FaultProxy
from steward_otp.faultproxy.proxy import ProxyStats as ProxyStats

__all__ = [
    "FLAKY",
    "PERFECT",
    "PROFILES",
    "SATELLITE",
    "FaultEvent",
    "FaultProxy",
    "OutageMode",
    "Profile",
    "ProxyStats",
    "TokenBucket",
    "main",
    "quantum_for",
]
