"""The delivery protocol and its pure state machines (no I/O, no clock of their own).

* :mod:`.protocol` — what travels on the wire besides the messages: the version header and
  the batched ACK record.
* :mod:`.sender` — one destination's outgoing window: attempts, ACK timeouts, retries,
  ``retryWait`` and giving up.
* :mod:`.receiver` — one subscription's incoming batches: decode, validate, dedupe (with the
  store's answer), ACK, and which messages run.

The Trio processes in :mod:`steward_otp.outbound.publisher` and :mod:`steward_otp.inbound`
feed these machines events and carry out the actions they return.
"""
