"""The broker's answers to publishes into the JetStream stream, for a node's Publishers.

With JetStream delivery the broker, not the receiver, acknowledges a publish: stored in
the stream means delivered. An answer is matched to its message by the reply token of the
publish (a late answer to an earlier attempt is ignored); a refusal leaves the message to
its ACK deadline, which sends it again. A publish that found no stream is resolved in the
background: when the broker has JetStream the stream is made and the messages published
again; when it has none, messages that chose JetStream themselves fail (their sender hears
why), and those sent so by the node's default stay in the outbox, the operator told once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from steward_otp.handlers.base import Level
from steward_otp.jetstream import parse_pub_ack
from steward_otp.outbound.destination import Destination, Flight, no_responders
from steward_otp.outbound.jetstream_probe import JetStreamProbe
from steward_otp.transport import InboundMessage

# The Publisher's modules log under its name.
log = logging.getLogger("steward_otp.outbound.publisher")

PublishFlights = Callable[[Sequence[Flight], Destination], Awaitable[list[str]]]
"""Publishes flights of a destination again, those still in the outbox (the Publisher's
own step for that)."""
FailFlight = Callable[[Destination, Flight, str, Level], Awaitable[None]]
"""Marks a flight failed and reports why (the Publisher's own failure step)."""


class StreamAcks:
    """Settles the publishes of a node's Publishers into the stream from the broker's answers.

    ``publish`` and ``fail`` are the Publisher's steps, used for the messages whose publish
    found no stream.
    """

    def __init__(
        self,
        probe: JetStreamProbe,
        report: Callable[[Level, str], None],
        *,
        publish: PublishFlights,
        fail: FailFlight,
    ) -> None:
        self.probe = probe
        """Whether the broker has JetStream (asked once for all destinations at a time)."""
        self.report = report
        self._publish = publish
        self._fail = fail
        self._jetstream_missing_reported = False

    def stored(
        self, dest: Destination, inbound: InboundMessage, nursery: trio.Nursery
    ) -> str | None:
        """The id of the message the broker's answer ``inbound`` says is stored in the
        stream (stored means delivered: settle it with the others of the wake-up), or None."""
        msg_id = dest.publishes.pop(inbound.subject.rpartition(".")[2], None)
        if msg_id is None:
            return None  # an earlier attempt's late answer, or not ours
        if no_responders(inbound):
            # No stream takes the subject: the broker has no JetStream, or nobody has made
            # the stream yet. _no_stream finds out which, in the background.
            dest.no_stream.append(msg_id)
            if not dest.resolving:
                dest.resolving = True
                nursery.start_soon(self._no_stream, dest)
            return None  # meanwhile the ACK deadline retries it
        answer = parse_pub_ack(inbound.payload)
        if not answer.stored:
            log.warning("JetStream refused %s: %s; it is sent again", msg_id, answer.error)
            return None
        self._jetstream_missing_reported = False
        return msg_id

    async def _no_stream(self, dest: Destination) -> None:
        """Publishes into the stream that found none: make the stream when the broker has
        JetStream (and publish them again); when it has none, fail the messages that asked
        for JetStream themselves (the reason is in the outbox and the error log, so their
        sender hears it) and report it once for those sent so by the node's default (their
        ACK deadline retries them)."""
        dest.busy += 1
        try:
            while dest.no_stream:
                msg_ids, dest.no_stream = dest.no_stream, []
                available = await self.probe.available()
                flights = [dest.flights[i] for i in dict.fromkeys(msg_ids) if i in dest.flights]
                if available:
                    await self._publish(flights, dest)
                elif available is False and dest.chosen:
                    dest.machine.forget({f.message.id for f in flights})
                    for flight in flights:
                        dest.flights.pop(flight.message.id, None)
                        await self._fail(
                            dest,
                            flight,
                            self.probe.missing_text(flight.subject, flight.message),
                            "error",
                        )
                elif available is False and not self._jetstream_missing_reported:
                    self._jetstream_missing_reported = True
                    self.report(
                        "error",
                        f"error: JetStream delivery: the broker {self.probe.broker_url()} has no "
                        "JetStream; messages wait in the outbox until it has; start it with "
                        "JetStream (nats-server --jetstream) or use --delivery core",
                    )
        finally:
            dest.resolving = False
            dest.busy -= 1
