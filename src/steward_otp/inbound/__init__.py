"""Inbound: one Subscriber per method, from the NATS subject to the handler and its reply.

Flow, one module per step: a :class:`~steward_otp.inbound.subscriber.Subscriber`
(``subscriber.py``) holds a queue subscription on ``<node>.<method>.<kind>`` (the group is
the subject, so instances with the same node name share the load) and works in batches:
each wake-up drains what has arrived (up to ``max_batch``) and

1. triages it (:func:`steward_otp.delivery.receiver.triage`): garbage and messages without
   id or ``fromNode`` are reported and not ACKed; an unsupported protocol version is
   rejected by id;
2. runs the verify hooks (``verify.py``: signatures and ACLs plug in here); a refusal is
   reported and, to a protocol-2 sender, rejected by id;
3. de-duplicates and persists the whole batch in ONE store operation: the store remembers
   the ids *before* anything is ACKed;
4. ACKs: one ACK per sender (reply subject) listing every id of the batch it asked an ACK
   for -- also duplicates, whose first ACK was evidently lost (steps 1 to 4:
   ``batch_intake.py``);
5. runs what is new, once: quick handlers (file writes, console, liveness) with the batch,
   their completions and replies stored in one operation (``quick_batches.py``); every
   other handler in its own task under ``methodTimeout`` (``-1`` = no limit), with
   Steward's replies submitted to the outbox; a message with a ``schedule`` runs again
   every interval until its time is up (``handler_runs.py``). What a finished handler
   leaves behind is stored by ``completions.py``.

With ``delivery = jetstream`` the messages come from this node's JetStream consumer instead
(``stream_intake.py``): the same steps, ACKed to the broker, run on the Subscriber of their
method.

Handler errors go back as error replies (``<fileName>.error``) and to the central error log.
An unexpected exception in a handler crashes the Subscriber, which its supervisor restarts;
the other Subscribers keep running.

A full disk (:class:`~steward_otp.store.StoreFull`) crashes nothing:

* a batch whose persisting is refused is not ACKed and nothing of it runs; its senders keep
  the messages and send them again (within their ``retries``), and once the store accepts
  writes again they are stored, ACKed and run once (nothing of them was stored before, so
  none is taken for a duplicate);
* a handler that already ran keeps its outcome and replies in memory and its completion is
  written again, every :data:`~steward_otp.inbound.completions.FULL_RETRY_MIN` ..
  :data:`~steward_otp.inbound.completions.FULL_RETRY_MAX` seconds, until it commits: the
  message stays unfinished in the store meanwhile and the handler does not run again -- not
  even when the Subscriber restarts (the completion is kept on the Subscriber and written
  by the next run). Only a node that stops before the write commits runs the message again
  at its next start, exactly as after a crash mid-handler;
* the error kernel hears of it sparingly (:class:`~steward_otp.disk_full.DiskFullNotice`):
  a line when it starts, at most one per
  :data:`~steward_otp.disk_full.DISK_FULL_REPORT_INTERVAL` while it lasts, one when it is
  over.
"""
