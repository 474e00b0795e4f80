"""Outbound: the durable outbox entry point, the Router, and one Publisher per destination.

Flow: ``Outbox.submit`` makes messages durable in the store and tells the Router; the Router
hands each message to the Publisher for its ``(toNode, method)``, started on demand under a
DynamicSupervisor and stopped after ``keep_publishers_alive_for`` idle seconds; the Publisher
delivers every message in its own task, so one slow or offline destination never holds up
another, nor another message to the same destination.

Delivery of one message (Steward §3.5, with a private reply inbox per message):

* ``ACKTimeout < 1`` — publish once (fire and forget), then delivered.
* ``ACKTimeout >= 1`` — up to ``retries + 1`` attempts; each waits ``ACKTimeout`` s for the
  receiver's ACK, then ``retryWait`` s before the next. When they run out the message is
  marked failed in the store (it stays there for an operator to re-queue or purge) and the
  "max retries reached" line goes to the central error log (never for REQErrorLog itself).

Nothing is lost when any of these processes crash: the store holds every undelivered
message, and the Router re-reads it on start and every ``sweep_interval`` seconds.

A full disk (:class:`~steward_otp.store.StoreFull` from a store write) crashes none of them
and keeps both guarantees -- nothing lost (a message leaves the outbox only by a committed
write), nothing run twice (the receiver dedupes what is sent again):

* a first send needs no store write and goes out; a retry whose record
  (``record_attempts``) is refused is not published: the messages leave the Publisher's
  window, stay in the outbox and in the Publisher, and are offered again after the backoff
  with the attempts they had left; an ``in_flight`` mark that is refused is not written
  (the message stays listed ``queued``, nothing else depends on it);
* an ACK whose ``mark_delivered_many`` is refused is kept in memory and written again after
  the backoff until it commits; nothing is sent again meanwhile. Should the Publisher stop
  before that (the node stops), the messages are still undelivered in the store and are
  sent again later: the receiver ACKs them again without running them again;
* a failure (``mark_failed``: attempts ran out, refused by the receiver, unsendable) is kept
  and written again the same way; its error-log line goes out once the mark commits;
* the backoff is per destination, :data:`FULL_RETRY_MIN` doubling to :data:`FULL_RETRY_MAX`
  seconds on trio's clock; while it runs the Publisher makes no store write, sends nothing
  new and lets no ACK deadline run out (no attempts are used up by a full disk);
* the Router reads the outbox (a read shares its commit with whatever writes wait, so it
  can meet a full disk too): a sweep that is refused is made again after the backoff, and
  a damaged row whose ``mark_failed`` is refused is found and failed by the next sweep;
* the error kernel hears of it sparingly, through one
  :class:`~steward_otp.disk_full.DiskFullNotice` for all Publishers: a line when it starts, at
  most one a minute while it lasts, one when every refused write has committed.
"""
