"""Messages signed in a batch: one Ed25519 signature over a Merkle root, and each message
still verifies alone, with every way of changing it refused as for a single signature."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import attrs
import cbor2
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from steward_otp.message import FIELD_NAMES, Message
from steward_otp.security import signing
from steward_otp.security.signing import (
    MAX_SIGNING_BATCH,
    BatchPlace,
    RefusalKind,
    Signature,
    SignatureFormatError,
    check,
    sign_batch,
    verifies_with,
)
from tests.property.strategies import any_messages
from tests.unit.security.test_signing import (
    CENTRAL_KEY,
    CENTRAL_PUBLIC,
    NOW,
    OTHER_PUBLIC,
    command,
    keys,
    where,
)

_SIGNATURE = FIELD_NAMES.index("arg_signature")


def batch_signed(messages: list[Message], *, now: float = NOW) -> list[Message]:
    values = [list(m.field_values()) for m in messages]
    sign_batch(values, CENTRAL_KEY, signer="central", now=now)
    return [Message.from_field_values(v) for v in values]


def commands(count: int) -> list[Message]:
    return [
        command(id=f"central-{i}", method_args=("bash", "-c", f"echo {i}")) for i in range(count)
    ]


def with_place(message: Message, **changes: Any) -> Message:
    """``message`` whose signature record has its batch place changed."""
    record = Signature.parse(message.arg_signature)
    assert record.batch is not None
    place = attrs.evolve(record.batch, **changes)
    return attrs.evolve(message, arg_signature=attrs.evolve(record, batch=place).encode())


@pytest.fixture(autouse=True)
def forget_verified_batches() -> Iterator[None]:
    """Every test starts with no batch signature known good."""
    signing._VERIFIED_BATCHES.clear()
    yield
    signing._VERIFIED_BATCHES.clear()


@given(st.lists(any_messages(), min_size=1, max_size=70))
def test_every_message_of_a_batch_verifies_alone(batch: list[Message]) -> None:
    for message, original in zip(batch_signed(batch), batch, strict=True):
        signing._VERIFIED_BATCHES.clear()
        assert check(message, keys, where(original)) is None
        assert verifies_with(message, CENTRAL_PUBLIC)
        assert not verifies_with(message, OTHER_PUBLIC)
        # Signing changed nothing but argSignature.
        assert attrs.evolve(message, arg_signature=original.arg_signature) == original


@pytest.mark.parametrize("count", [2, 3, 5, 7, 8, 9, MAX_SIGNING_BATCH, MAX_SIGNING_BATCH + 1, 130])
def test_one_signature_per_batch_of_at_most_max_signing_batch(count: int) -> None:
    signed = batch_signed(commands(count))
    records = [Signature.parse(m.arg_signature) for m in signed]
    groups = [records[i : i + MAX_SIGNING_BATCH] for i in range(0, count, MAX_SIGNING_BATCH)]
    for group in groups:
        assert len({r.value for r in group}) == 1
        if len(group) == 1:
            assert group[0].batch is None  # alone: a plain signature
            continue
        assert [r.batch.index for r in group if r.batch] == list(range(len(group)))
        assert all(r.batch is not None and r.batch.size == len(group) for r in group)
        # A proof has one hash per level at most: 6 for 64 messages.
        assert max(len(r.batch.proof) for r in group if r.batch) <= (len(group) - 1).bit_length()
    assert len({r.value for r in records}) == len(groups)
    for message in signed:
        assert check(message, keys, where(message)) is None


def test_a_batch_of_one_is_signed_as_a_single_message() -> None:
    [message] = batch_signed([command()])
    assert cbor2.loads(message.arg_signature)[0] == signing.SIGNATURE_VERSION
    assert Signature.parse(message.arg_signature).batch is None
    assert check(message, keys, where(message)) is None


def test_the_batch_signature_is_checked_once_then_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed = batch_signed(commands(10))
    checked: list[bytes] = []
    real = signing._verifies

    def counting(raw_key: bytes, value: bytes, data: bytes) -> bool:
        checked.append(data)
        return real(raw_key, value, data)

    monkeypatch.setattr(signing, "_verifies", counting)
    for message in signed:
        assert check(message, keys, where(message)) is None
    assert len(checked) == 1
    # A message changed after signing still fails, the batch being known good.
    changed = attrs.evolve(signed[3], method_args=("bash", "-c", "rm -rf /"))
    refusal = check(changed, keys, where(changed))
    assert refusal is not None and refusal.kind is RefusalKind.BAD_SIGNATURE


@given(
    st.integers(min_value=2, max_value=MAX_SIGNING_BATCH),
    st.data(),
)
def test_any_field_changed_in_any_message_of_a_batch_is_refused(
    size: int, data: st.DataObject
) -> None:
    signed = batch_signed(commands(size))
    for message in signed:  # known good first: the cache must not let a change through
        assert check(message, keys, where(message)) is None
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    target = signed[index]
    field, value = data.draw(
        st.sampled_from(
            [
                ("method_args", ("bash", "-c", "reboot")),
                ("to_node", "ship2"),
                ("id", "central-other"),
                ("data", b"other"),
                ("method_timeout", 999),
                ("file_name", "other.txt"),
            ]
        )
    )
    changes: dict[str, Any] = {field: value}
    changed = attrs.evolve(target, **changes)
    refusal = check(changed, keys, where(changed))
    assert refusal is not None
    assert refusal.kind in (RefusalKind.BAD_SIGNATURE, RefusalKind.DATA_ALTERED)
    assert not verifies_with(changed, CENTRAL_PUBLIC)


@given(st.integers(min_value=2, max_value=MAX_SIGNING_BATCH), st.data())
def test_a_changed_place_or_proof_is_refused(size: int, data: st.DataObject) -> None:
    signed = batch_signed(commands(size))
    for message in signed:
        assert check(message, keys, where(message)) is None
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    target = signed[index]
    place = Signature.parse(target.arg_signature).batch
    assert place is not None
    changes: list[dict[str, Any]] = [
        {"index": (index + data.draw(st.integers(1, size - 1))) % size},
        {"size": size + data.draw(st.integers(1, 100))},
        {"proof": place.proof[:-1]},
        {"proof": (*place.proof, bytes(32))},
    ]
    if place.proof:
        spot = data.draw(st.integers(0, len(place.proof) - 1))
        flipped = bytes([place.proof[spot][0] ^ 1]) + place.proof[spot][1:]
        changes.append({"proof": (*place.proof[:spot], flipped, *place.proof[spot + 1 :])})
    if size > 2:
        changes.append({"size": data.draw(st.integers(2, size - 1))})
    change = data.draw(st.sampled_from(changes))
    assume(change.get("size", size) > change.get("index", index))
    forged = with_place(target, **change)
    refusal = check(forged, keys, where(forged))
    assert refusal is not None and refusal.kind is RefusalKind.BAD_SIGNATURE


def test_a_message_with_the_place_of_another_batch_is_refused() -> None:
    others = [attrs.evolve(m, directory="elsewhere") for m in commands(4)]
    first, second = batch_signed(commands(4)), batch_signed(others, now=NOW + 1)
    for message in first + second:
        assert check(message, keys, where(message)) is None
    # Message 1 of the first batch with the record (signature, place, proof) of the second.
    mixed = attrs.evolve(first[1], arg_signature=second[1].arg_signature)
    refusal = check(mixed, keys, where(mixed))
    assert refusal is not None and refusal.kind is RefusalKind.BAD_SIGNATURE


def test_a_message_moved_into_another_batch_s_record_is_refused() -> None:
    batch = batch_signed(commands(4))
    outsider = batch_signed([command(id="central-x"), command(id="central-y")])[0]
    taken = attrs.evolve(outsider, arg_signature=batch[0].arg_signature)
    refusal = check(taken, keys, where(taken))
    assert refusal is not None and refusal.kind is RefusalKind.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ([2, "central", 1, bytes(32), bytes(64), 1, 0, []], "batch size is not a whole number"),
        ([2, "central", 1, bytes(32), bytes(64), 4, 4, []], "place in the batch is not a whole"),
        ([2, "central", 1, bytes(32), bytes(64), 4, -1, []], "from 0 to 3"),
        ([2, "central", 1, bytes(32), bytes(64), 10**5000, 0, []], "batch size is not"),
        ([2, "central", 1, bytes(32), bytes(64), 4, 10**5000, []], "place in the batch"),
        (
            [[1], "central", 1, bytes(32), bytes(64)],
            "version (not a small integer) is not supported",
        ),
        (
            [{"a": 1}, "central", 1, bytes(32), bytes(64)],
            "version (not a small integer) is not supported",
        ),
        (
            [10**5000, "central", 1, bytes(32), bytes(64)],
            "version (not a small integer) is not supported",
        ),
        ([2, "central", 1, bytes(32), bytes(64), 4, 0, [b"x"]], "batch proof"),
        ([2, "central", 1, bytes(32), bytes(64), 4, 0, [bytes(32)] * 33], "batch proof"),
        ([2, "central", 1, bytes(32), bytes(64)], "version 2 record has 8 items"),
        ([1, "central", 1, bytes(32), bytes(64), 4, 0, []], "version 1 record has 5 items"),
        ([3, "central", 1, bytes(32), bytes(64)], "version 3 is not supported; allowed: 1, 2"),
    ],
)
def test_a_malformed_batch_record_is_refused_saying_what_is_wrong(
    record: list[Any], why: str
) -> None:
    with pytest.raises(SignatureFormatError, match=re.escape(why)):
        Signature.parse(cbor2.dumps(record))
    message = attrs.evolve(command(), arg_signature=cbor2.dumps(record))
    refusal = check(message, keys, where(message))
    assert refusal is not None and refusal.kind is RefusalKind.MALFORMED
    assert why.split(" ", maxsplit=1)[0] in refusal.reason


def test_the_record_round_trips() -> None:
    record = Signature("central", 5, bytes(32), bytes(64), BatchPlace(3, 2, (bytes(32),)))
    assert Signature.parse(record.encode()) == record


def test_a_batch_signed_message_keeps_its_signature_through_the_values() -> None:
    [message, _] = batch_signed(commands(2))
    values = list(message.field_values())
    assert values[_SIGNATURE] == message.arg_signature


def test_only_a_batch_checked_with_an_allowed_key_is_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = batch_signed(commands(3)), batch_signed(commands(3), now=NOW + 1)
    assert verifies_with(first[0], CENTRAL_PUBLIC)  # a key brought along (a hello's)
    assert check(first[0], keys, where(first[0]), remember=False) is None
    assert signing._VERIFIED_BATCHES == {}

    monkeypatch.setattr(signing, "_VERIFIED_KEPT", 1)
    assert check(first[0], keys, where(first[0])) is None
    [kept] = signing._VERIFIED_BATCHES
    assert kept[1] == Signature.parse(first[0].arg_signature).value
    assert check(second[0], keys, where(second[0])) is None
    [kept] = signing._VERIFIED_BATCHES  # the oldest made room
    assert kept[1] == Signature.parse(second[0].arg_signature).value
