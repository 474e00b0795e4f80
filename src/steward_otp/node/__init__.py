"""One steward-otp node: the services its processes share, and its supervision tree, built
from a Config.

``from steward_otp.node import Node`` is the embedding API's entry point: ``async with
Node(config) as node: ...`` runs the tree in the background of the ``async with`` block;
``await node.run()`` runs it until :meth:`Node.stop` and returns the exit status.

One module per part of a node:

* :mod:`~steward_otp.node.node` -- :class:`Node`: the services its processes share (store,
  outbox, bridge, error kernel, security, reply hub), its own ``NodeServices``, and running
  its tree (``run``, ``async with``, ``stop``);
* :mod:`~steward_otp.node.tree` -- the supervision tree: the root supervisor and every child
  it starts, in start order, with the drawing of the tree;
* :mod:`~steward_otp.node.connection` -- how the node reaches its broker, from its Config:
  the NATS URL, TLS, nkey and ``.creds`` files, the embedded nats-server;
* :mod:`~steward_otp.node.services` -- what the node's handlers get as ``ctx.services``
  (its everyday capabilities, nothing else);
* :mod:`~steward_otp.node.subscriber_control` -- starting and stopping the node's
  Subscribers, for the ``REQOpProcess*`` handlers only.
"""

from steward_otp.node.connection import broker_url
from steward_otp.node.node import Node
from steward_otp.security.service import SecuritySetupError

__all__ = ["Node", "SecuritySetupError", "broker_url"]
