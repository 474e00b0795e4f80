"""The sender state machine, alone and against a lossy, duplicating, reordering network."""

from __future__ import annotations

import itertools
import math

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.delivery.protocol import Ack
from steward_otp.delivery.sender import (
    PROBE_FIRST,
    Action,
    Delivered,
    GaveUp,
    Outgoing,
    Refused,
    SenderMachine,
    Transmit,
)


def transmitted(actions: list[Action]) -> list[str]:
    return [i for a in actions if isinstance(a, Transmit) for i in (*a.first, *a.again)]


def test_acked_message_is_delivered_once() -> None:
    machine = SenderMachine(window=4)
    machine.offer(Outgoing("a", ack_timeout=5, attempts=3))
    assert machine.poll(0.0) == [Transmit(first=("a",))]
    assert machine.acked(Ack(accepted=("a",))) == [Delivered(("a",))]
    assert machine.acked(Ack(accepted=("a",))) == []  # a late duplicate ACK changes nothing
    assert machine.outstanding == 0 and machine.next_deadline() is None


def test_timeouts_retry_after_retry_wait_then_give_up() -> None:
    machine = SenderMachine()
    machine.offer(Outgoing("a", ack_timeout=5, attempts=2, retry_wait=3))
    assert transmitted(machine.poll(0.0)) == ["a"]
    assert machine.next_deadline() == 5.0
    assert machine.poll(4.9) == []
    assert machine.poll(5.0) == []  # ACK overdue: wait retryWait before sending again
    assert machine.missed_acks == 1
    assert machine.next_deadline() == 8.0
    assert machine.poll(8.0) == [Transmit(again=("a",))]
    assert machine.poll(13.0) == [GaveUp(("a",))]
    assert machine.missed_acks == 2 and machine.outstanding == 0


def test_zero_retry_wait_retransmits_at_the_deadline() -> None:
    machine = SenderMachine()
    machine.offer(Outgoing("a", ack_timeout=2, attempts=3))
    machine.poll(0.0)
    assert machine.poll(2.0) == [Transmit(again=("a",))]


def test_late_ack_while_waiting_to_retry_still_delivers() -> None:
    machine = SenderMachine()
    machine.offer(Outgoing("a", ack_timeout=1, attempts=2, retry_wait=10))
    machine.poll(0.0)
    machine.poll(1.0)
    assert machine.acked(Ack(accepted=("a",))) == [Delivered(("a",))]
    assert machine.poll(20.0) == []


def test_window_holds_back_the_rest_until_settled() -> None:
    machine = SenderMachine(window=2)
    for name in "abc":
        machine.offer(Outgoing(name, ack_timeout=5))
    assert transmitted(machine.poll(0.0)) == ["a", "b"]
    assert machine.queued == 1 and machine.outstanding == 2
    machine.acked(Ack(accepted=("a",)))
    assert machine.next_deadline() == -math.inf
    assert transmitted(machine.poll(0.5)) == ["c"]


def test_fire_and_forget_is_delivered_when_flushed() -> None:
    machine = SenderMachine()
    machine.offer(Outgoing("n", ack_timeout=0))
    assert machine.poll(0.0) == [Transmit(first=("n",))]
    assert machine.next_deadline() is None  # no ACK deadline for it
    assert machine.flushed(["n"]) == [Delivered(("n",))]


def test_rejection_refuses_with_the_reason() -> None:
    machine = SenderMachine()
    machine.offer(Outgoing("a", ack_timeout=5))
    machine.poll(0.0)
    assert machine.acked(Ack(rejected=(("a", "bad version"),))) == [Refused("a", "bad version")]


def test_release_and_forget_let_go_without_settling() -> None:
    machine = SenderMachine()
    for name in "ab":
        machine.offer(Outgoing(name, ack_timeout=5))
    machine.poll(0.0)
    assert machine.release(["a", "zzz"]) == ["a"]
    machine.forget(["b"])
    assert machine.held() == [] and machine.acked(Ack(accepted=("a", "b"))) == []


def test_offering_a_held_id_again_is_ignored() -> None:
    machine = SenderMachine()
    assert machine.offer(Outgoing("a", ack_timeout=5))
    assert not machine.offer(Outgoing("a", ack_timeout=5))
    assert machine.queued == 1


def test_a_silent_destination_is_probed_and_gets_its_unheard_window_when_it_answers() -> None:
    machine = SenderMachine(window=4)
    for msg_id in ("a", "b", "c"):
        machine.offer(Outgoing(msg_id, ack_timeout=10, attempts=2))
    assert machine.poll(0.0) == [Transmit(first=("a", "b", "c"))]
    machine.nobody_listening(0.001)  # the broker's notice for one of the publishes
    assert machine.silent
    assert machine.next_deadline() == pytest.approx(0.001 + PROBE_FIRST)
    # Probes: the oldest unheard one, at doubling intervals; not counted as attempts.
    probes = []
    now = 0.0
    while now < 1.0:
        now = machine.next_deadline() or math.inf
        probes += [(now, a.resend) for a in machine.poll(now) if isinstance(a, Transmit)]
    assert [resend for _, resend in probes] == [("a",)] * len(probes)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(probes)]
    assert gaps == sorted(gaps) and gaps[0] == pytest.approx(2 * PROBE_FIRST)
    assert machine.probes == len(probes) == 5  # 0.05, 0.15, 0.35, 0.75, 1.55 s
    # The destination is back: the probe is ACKed, the rest goes out again at once.
    assert machine.acked(Ack(accepted=("a",))) == [
        Delivered(("a",)),
        Transmit(resend=("b", "c")),
    ]
    assert not machine.silent
    # Their ACK deadlines and attempts are as before: one retry each, then they give up.
    assert machine.next_deadline() == 10.0
    assert transmitted(machine.poll(10.0)) == ["b", "c"]
    assert machine.poll(20.0) == [GaveUp(("b", "c"))]


def test_what_is_sent_or_heard_of_while_silent_becomes_unheard_at_the_next_notice() -> None:
    machine = SenderMachine(window=4)
    for msg_id in ("a", "b"):
        machine.offer(Outgoing(msg_id, ack_timeout=10, attempts=3))
    machine.poll(0.0)
    machine.nobody_listening(0.0)
    machine.nobody_listening(0.0)  # the notice of the other publish changes nothing more
    # A first send while silent meets its own notice.
    machine.offer(Outgoing("c", ack_timeout=10, attempts=3))
    assert transmitted(machine.poll(1.0)) == ["c"]
    machine.nobody_listening(1.0)
    assert machine.acked(Ack(accepted=("a",))) == [
        Delivered(("a",)),
        Transmit(resend=("b", "c")),
    ]
    # Heard of again by that ACK, and nothing sent since: the next notice still counts.
    machine.nobody_listening(2.0)
    assert machine.acked(Ack(accepted=("b",))) == [Delivered(("b",)), Transmit(resend=("c",))]
    # A retry while silent meets its own notice too.
    machine.nobody_listening(3.0)
    assert transmitted(machine.poll(11.0)) == ["c"]
    machine.nobody_listening(11.0)
    assert machine.acked(Ack(accepted=("other",))) == [Transmit(resend=("c",))]


def test_a_long_silence_costs_about_one_probe_per_ack_timeout() -> None:
    machine = SenderMachine()
    machine.offer(Outgoing("a", ack_timeout=5, attempts=1000))
    machine.poll(0.0)
    machine.nobody_listening(0.0)
    now, probes = 0.0, 0
    while now < 3600:
        now = machine.next_deadline() or math.inf
        for action in machine.poll(now):
            if isinstance(action, Transmit) and action.again:
                machine.nobody_listening(now)  # every retry meets "no responders" too
            if isinstance(action, Transmit):
                probes += len(action.resend)
    # an hour of ACK timeouts (5 s) and probes at most every 5 s once grown
    assert probes <= 3600 / 5 + 10


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        SenderMachine(window=0)


# ------------------------------------------------------------------ the property


@attrs.define
class World:
    """A receiver that dedupes, behind a network that loses, duplicates and reorders."""

    machine: SenderMachine
    items: dict[str, Outgoing]
    now: float = 0.0
    wire: list[str] = attrs.field(factory=list)  # messages on their way to the receiver
    acks: list[Ack] = attrs.field(factory=list)  # ACKs on their way back
    stored: set[str] = attrs.field(factory=set)
    executed: list[str] = attrs.field(factory=list)
    rejects: set[str] = attrs.field(factory=set)
    sends: dict[str, list[float]] = attrs.field(factory=dict)
    settled: dict[str, str] = attrs.field(factory=dict)
    to_flush: list[str] = attrs.field(factory=list)
    listening: bool = True  # False: the destination is away, the broker says "no responders"
    resends: dict[str, int] = attrs.field(factory=dict)  # uncounted: probes and resends

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                for msg_id in (*action.first, *action.again):
                    self.sends.setdefault(msg_id, []).append(self.now)
                    self.wire.append(msg_id)
                    if not self.items[msg_id].wants_ack:
                        self.to_flush.append(msg_id)
                for msg_id in action.resend:
                    assert msg_id in self.sends, f"{msg_id} resent before it was ever sent"
                    assert msg_id not in self.settled, f"{msg_id} resent after it settled"
                    assert self.items[msg_id].wants_ack
                    self.resends[msg_id] = self.resends.get(msg_id, 0) + 1
                    self.wire.append(msg_id)
            else:
                ids = action.msg_ids if not isinstance(action, Refused) else (action.msg_id,)
                kind = type(action).__name__
                for msg_id in ids:
                    assert msg_id not in self.settled, f"{msg_id} settled twice"
                    self.settled[msg_id] = kind
        assert self.machine.outstanding <= self.machine.window

    def receive(self, msg_id: str) -> None:
        item = self.items[msg_id]
        if not self.listening:
            if item.wants_ack:  # a publish with a reply subject gets the broker's notice
                self.machine.nobody_listening(self.now)
            return
        if msg_id in self.rejects:
            self.acks.append(Ack(rejected=((msg_id, "refused"),)))
            return
        if msg_id not in self.stored:
            self.stored.add(msg_id)
            self.executed.append(msg_id)
        if item.wants_ack:
            self.acks.append(Ack(accepted=(msg_id,)))

    def flush_fire_and_forget(self) -> None:
        """The driver flushes fire-and-forget publishes right after sending them."""
        flushing, self.to_flush = self.to_flush, []
        self.apply(self.machine.flushed(flushing))


outgoing = st.builds(
    Outgoing,
    msg_id=st.just(""),
    ack_timeout=st.sampled_from([0, 1, 2, 5]),
    attempts=st.integers(1, 4),
    retry_wait=st.sampled_from([0.0, 0.5, 3.0]),
)


@given(
    window=st.integers(1, 6),
    items=st.lists(outgoing, min_size=1, max_size=25),
    rejected=st.sets(st.integers(0, 24), max_size=3),
    data=st.data(),
)
def test_never_lost_never_sent_beyond_attempts_settled_exactly_once_even_when_away(
    window: int, items: list[Outgoing], rejected: set[int], data: st.DataObject
) -> None:
    machine = SenderMachine(window)
    named = {f"m{i}": attrs.evolve(item, msg_id=f"m{i}") for i, item in enumerate(items)}
    world = World(machine, named, rejects={f"m{i}" for i in rejected})
    for item in named.values():
        machine.offer(item)
    steps = data.draw(st.integers(0, 200), label="chaotic steps")
    for _ in range(steps):
        world.apply(machine.poll(world.now))
        choice = data.draw(
            st.sampled_from(
                ["deliver", "drop", "dup", "swap", "ack", "lose-ack", "tick", "away", "back"]
            )
        )
        if choice == "deliver" and world.wire:
            world.receive(world.wire.pop(0))
        elif choice == "drop" and world.wire:
            world.wire.pop(0)
        elif choice == "dup" and world.wire:
            world.wire.append(world.wire[0])
        elif choice == "swap" and len(world.wire) > 1:
            world.wire[0], world.wire[1] = world.wire[1], world.wire[0]
        elif choice == "ack" and world.acks:
            world.apply(machine.acked(world.acks.pop(0)))
        elif choice == "lose-ack" and world.acks:
            world.acks.pop(0)
        elif choice == "tick":
            world.now += data.draw(st.sampled_from([0.0625, 0.25, 1.0, 3.0]))  # exact in binary
        elif choice == "away":
            world.listening = False
        elif choice == "back":
            world.listening = True
        world.flush_fire_and_forget()
    # The network heals: the destination listens, everything sent arrives, every ACK
    # comes back, time moves on.
    world.listening = True
    for _ in range(10_000):
        world.apply(machine.poll(world.now))
        world.flush_fire_and_forget()
        while world.wire:
            world.receive(world.wire.pop(0))
        while world.acks:
            world.apply(machine.acked(world.acks.pop(0)))
        if not machine.held():
            break
        deadline = machine.next_deadline()
        assert deadline is not None, "messages held with nothing left to wait for"
        world.now = max(world.now, deadline)
    assert not machine.held()
    assert set(world.settled) == set(named), "every message settled"
    assert len(world.executed) == len(set(world.executed)), "nothing ran twice"
    for msg_id, times in world.sends.items():
        item = named[msg_id]
        assert len(times) <= item.attempts
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # (less a rounding error: probe times are not exact in binary)
        assert all(gap >= item.ack_timeout + item.retry_wait - 1e-9 for gap in gaps)
    for msg_id, outcome in world.settled.items():
        if outcome == "Delivered" and named[msg_id].wants_ack:
            assert msg_id in world.stored, "ACKed means the receiver has it"
        if outcome == "Refused":
            assert msg_id in world.rejects
