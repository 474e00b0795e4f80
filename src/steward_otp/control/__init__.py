"""The control socket ``<home>/tmp/control.sock``: how the CLI inspects a running node.

Protocol (JSON lines): the client sends one request object per line and reads one response
line per request, in order; it may send several on one connection. Only the node's own user
can connect (socket mode 0600).

Requests (``op``) and their responses (always ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``):

* ``{"op": "tree"}`` → ``"tree"``: the live supervision tree (``ProcessSnapshot.to_dict``).
* ``{"op": "status"}`` → ``"status"``: node, broker URL, connection state, outbox counts per
  state and per destination, last hello per node (on the central node); with JetStream
  delivery, ``delivery.waiting_per_node``: messages waiting in the stream per node (or
  ``delivery.waiting_problem`` when the broker could not say).
* ``{"op": "queue.ls", "toNode"?: str, "states"?: [str]}`` → ``"messages"``.
* ``{"op": "queue.cancel", "id": str}`` / ``{"op": "queue.retry", "id": str}`` → ``"done"``.
* ``{"op": "queue.purge", "toNode"?: str, "olderThan"?: seconds}`` → ``"purged"``
  (``olderThan``: a finite number >= 0).
* ``{"op": "queue.stream.ls", "toNode"?: str, "limit"?: n}`` → ``"messages"``: what waits in
  the JetStream stream for that node (default: every node), each ``{"seq", "id",
  "toNode", "subject", "method", "fromNode", "storedAt", "size", "broadcast"}``; at most
  ``limit`` (default 1000, at most 10000).
* ``{"op": "queue.stream.cancel", "seq"?: n, "id"?: str, "toNode"?: str}`` → ``"done"``,
  ``"seqs"``: removes the message from the stream (by sequence, or the waiting message(s)
  with that id; with ``toNode``, only if it waits for that node), so no node takes it; a
  broadcast is removed for every node.
* ``{"op": "methods"}`` → ``"methods"``: the node's method table (built-in methods and those
  added by embedding code), each ``{"name", "kind", "replyCapable", "routable", "quick",
  "description", "args"}``; ``steward-otp send`` validates against it.
* ``{"op": "audit.end"}`` → ``"seq"``: the position of the newest audit record (0: none).
  Take it before sending, then follow the replies from there: nothing is missed.
* ``{"op": "audit", "id"?: str, "since"?: wall time, "node"?: str, "direction"?: "in" |
  "out", "limit"?: n}`` → ``"records"``: audit records, oldest first -- one message's, or
  the newest ``limit`` (default 100, at most 10000) matching the filters.

Streaming requests answer with several lines and end the connection (send them last):

* ``{"op": "replies", "ids": [str], "deliveryIds"?: [str], "afterSeq"?: seq,
  "timeout"?: seconds, "quiet"?: seconds}`` → one ``{"ok": true, "event": ...}`` line per
  reply to a watched message and per change of its delivery state, then an ``"end"`` line
  with the final state of each (see :mod:`steward_otp.replies.follow`). ``ids`` want a reply,
  ``deliveryIds`` only delivery; ``afterSeq`` (from ``audit.end``) is where to start
  reading (default: now); ``timeout`` (default 60, at most 7 days) bounds the wait. Closing
  the connection ends it early.

Taking a snapshot reads bookkeeping only, so inspecting a node under load does not slow it.

One module per part, each importing only those before it. This ``__init__`` holds only this
description, so a client (the CLI) that imports :mod:`~steward_otp.control.client` loads
nothing of the server:

* :mod:`~steward_otp.control.requests` — :class:`~steward_otp.control.requests.Inspectable`,
  :class:`~steward_otp.control.requests.RequestError` and the checks of request fields.
* :mod:`~steward_otp.control.queues` — ``queue.*``.
* :mod:`~steward_otp.control.status` — ``tree``, ``status``, ``methods``.
* :mod:`~steward_otp.control.audit` — ``audit``, ``audit.end``, ``replies``.
* :mod:`~steward_otp.control.server` — :func:`~steward_otp.control.server.answer` and the
  :class:`~steward_otp.control.server.ControlServer` process.
* :mod:`~steward_otp.control.client` — :func:`~steward_otp.control.client.control_request`,
  :func:`~steward_otp.control.client.control_stream`.
"""
