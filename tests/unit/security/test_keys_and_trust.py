"""The key pair on disk (Steward's format) and the trust store (keys.json)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.security.keyfiles import (
    KeyFileError,
    SigningKey,
    decode_key_text,
    encode_key_text,
    load_or_create,
)
from steward_otp.security.trust import HelloOutcome, PendingKey, TrustError, TrustState, TrustStore

K1, K2, K3 = (bytes([n]) * 32 for n in (1, 2, 3))


# -- key files --------------------------------------------------------------------------------


def test_a_key_pair_is_created_on_first_start_with_a_private_file_only_the_owner_reads(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "etc" / "signing"

    key, created = load_or_create(folder)

    assert created
    assert stat.S_IMODE((folder / "private.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # Steward's format: base64 without padding; private = seed || public.
    private_text = (folder / "private.key").read_text()
    public_text = (folder / "public.key").read_text()
    assert "=" not in private_text and "=" not in public_text
    raw = base64.b64decode(private_text + "=" * (-len(private_text) % 4))
    assert raw[32:] == key.public == decode_key_text(public_text, size=32, what="x")
    assert Ed25519PrivateKey.from_private_bytes(raw[:32]).public_key().public_bytes_raw() == (
        key.public
    )


def test_the_key_pair_is_loaded_on_later_starts(tmp_path: Path) -> None:
    first, _ = load_or_create(tmp_path)
    again, created = load_or_create(tmp_path)

    assert not created
    assert again.public == first.public


def test_a_stewards_key_files_are_taken_over(tmp_path: Path) -> None:
    seed = bytes(range(32))
    steward = SigningKey.from_seed(seed)
    (tmp_path / "private.key").write_text(
        base64.b64encode(seed + steward.public).decode().rstrip("=")
    )
    (tmp_path / "public.key").write_text(base64.b64encode(steward.public).decode().rstrip("="))

    key, created = load_or_create(tmp_path)

    assert not created and key.public == steward.public


def test_a_missing_public_key_file_is_written_again(tmp_path: Path) -> None:
    key, _ = load_or_create(tmp_path)
    (tmp_path / "public.key").unlink()

    again, created = load_or_create(tmp_path)

    assert not created and again.public == key.public
    assert (tmp_path / "public.key").read_text() == key.public_text


def test_a_missing_private_key_is_not_silently_replaced(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / "private.key").unlink()

    with pytest.raises(KeyFileError, match="this node's signing key is missing"):
        load_or_create(tmp_path)


def test_key_files_that_do_not_belong_together_are_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / "public.key").write_text(encode_key_text(K1))

    with pytest.raises(KeyFileError, match="does not belong to"):
        load_or_create(tmp_path)


def test_a_damaged_private_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "private.key").write_text("not base64!")

    with pytest.raises(KeyFileError, match="cannot read the signing key"):
        load_or_create(tmp_path)


@given(st.binary(min_size=32, max_size=32))
def test_key_text_round_trips_with_or_without_padding(raw: bytes) -> None:
    text = encode_key_text(raw)
    assert decode_key_text(text, size=32, what="k") == raw
    assert decode_key_text(base64.b64encode(raw).decode(), size=32, what="k") == raw


# -- trust state ------------------------------------------------------------------------------


def test_a_new_nodes_hello_makes_its_key_pending_until_allowed() -> None:
    state, outcome = TrustState().record_hello("ship1", K1, 10.0)

    assert outcome is HelloOutcome.NEW
    assert state.pending == {"ship1": PendingKey(K1, 10.0)}
    assert state.allowed == {}
    allowed = state.allow(["ship1"])
    assert allowed.allowed == {"ship1": K1} and allowed.pending == {}
    assert allowed.record_hello("ship1", K1, 11.0) == (allowed, HelloOutcome.KNOWN)


def test_the_same_pending_key_again_changes_nothing() -> None:
    state, _ = TrustState().record_hello("ship1", K1, 10.0)

    assert state.record_hello("ship1", K1, 20.0) == (state, HelloOutcome.STILL_PENDING)


def test_a_changed_key_is_pending_and_the_allowed_one_stays() -> None:
    state = TrustState(allowed={"ship1": K1})

    rotated, outcome = state.record_hello("ship1", K2, 10.0)

    assert outcome is HelloOutcome.CHANGED
    assert rotated.allowed == {"ship1": K1}
    assert rotated.pending["ship1"].key == K2
    assert rotated.allow(["ship1"]).allowed == {"ship1": K2}


def test_allow_is_all_or_nothing_and_names_what_is_missing() -> None:
    state, _ = TrustState().record_hello("ship1", K1, 10.0)

    with pytest.raises(
        TrustError, match=r"no pending key for ship9; nodes with a pending key: ship1"
    ):
        state.allow(["ship1", "ship9"])


def test_add_and_delete() -> None:
    state = TrustState().add("central", K3)
    assert state.allowed == {"central": K3}
    state, _ = state.record_hello("ship1", K1, 1.0)

    after = state.delete(["central", "ship1"])

    assert after == TrustState()
    with pytest.raises(TrustError, match="no allowed or pending key for ship2"):
        after.delete(["ship2"])


@pytest.mark.parametrize(
    ("node", "key", "problem"),
    [("bad node", K1, "not a valid node name"), ("ship1", b"\1" * 31, "has 31 bytes")],
)
def test_bad_names_and_keys_are_refused(node: str, key: bytes, problem: str) -> None:
    with pytest.raises(TrustError, match=problem):
        TrustState().add(node, key)


def test_the_json_form_round_trips() -> None:
    state, _ = TrustState(allowed={"central": K3}).record_hello("ship1", K1, 12.5)

    text = state.to_json()

    assert TrustState.from_json(text, source="keys.json") == state
    document = json.loads(text)
    assert document["allowed"] == {"central": encode_key_text(K3)}
    assert document["pending"]["ship1"] == {"key": encode_key_text(K1), "first_seen": 12.5}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON"),
        ("[]", 'expected an object with "allowed" and "pending"'),
        ('{"allow": {}}', "unknown keys ['allow']"),
        ('{"allowed": {"central": "abc"}}', "the key of 'central' holds 2 bytes"),
        ('{"allowed": {"a b": "' + encode_key_text(K1) + '"}}', "not a valid node name"),
        ('{"pending": {"ship1": "x"}}', "pending 'ship1' must be"),
    ],
)
def test_a_bad_keys_file_is_refused_naming_the_file(text: str, problem: str) -> None:
    with pytest.raises(TrustError, match=r"keys\.json: ") as caught:
        TrustState.from_json(text, source="/h/etc/signing/keys.json")
    assert problem in str(caught.value)


# -- trust store (the file) -------------------------------------------------------------------


def test_changes_are_written_and_read_back(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    store.update(lambda s: s.add("central", K3))

    assert TrustStore(tmp_path).state.allowed == {"central": K3}
    assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600


def test_a_running_store_picks_up_changes_made_by_another_process(tmp_path: Path) -> None:
    now = [0.0]
    running = TrustStore(tmp_path, clock=lambda: now[0])
    TrustStore(tmp_path).update(lambda s: s.add("central", K3))

    assert running.refresh() is True  # first check: immediately
    assert running.state.allowed == {"central": K3}
    TrustStore(tmp_path).update(lambda s: s.add("ship1", K1))
    assert running.refresh() is False  # checked at most once a second
    now[0] = 1.5
    assert running.refresh() is True
    assert set(running.state.allowed) == {"central", "ship1"}


def test_an_update_starts_from_the_file_not_from_a_stale_copy(tmp_path: Path) -> None:
    first, second = TrustStore(tmp_path), TrustStore(tmp_path)
    first.update(lambda s: s.add("central", K3))

    second.update(lambda s: s.add("ship1", K1))  # second never refreshed

    assert set(TrustStore(tmp_path).state.allowed) == {"central", "ship1"}


def test_a_damaged_file_keeps_the_last_good_state(tmp_path: Path) -> None:
    store = TrustStore(tmp_path, clock=lambda: 0.0)
    store.update(lambda s: s.add("central", K3))
    (tmp_path / "keys.json").write_text("{ broken")

    with pytest.raises(TrustError, match="not valid JSON"):
        store.refresh(force=True)
    assert store.state.allowed == {"central": K3}


def test_a_failed_change_writes_nothing(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)

    with pytest.raises(TrustError):
        store.update(lambda s: s.allow(["ship1"]))
    assert not (tmp_path / "keys.json").exists()
