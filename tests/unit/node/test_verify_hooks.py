"""The verify hooks a receiver runs: a hook that raises refuses that message alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.delivery import receiver
from steward_otp.inbound.verify import verify_candidates
from steward_otp.message import Message
from tests.unit.handlers.fakes import FakeServices


def candidate(msg_id: str) -> receiver.Candidate:
    message = Message(
        id=msg_id, to_node="ship1", from_node="central", method="REQCliCommand", ack_timeout=5
    )
    return receiver.Candidate(message=message, stored=b"", reply="_SOTP.INBOX.x", versioned=True)


async def test_a_hook_that_raises_refuses_that_message_and_the_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def buggy(message: Message) -> str | None:
        if message.id == "central:bad":
            raise TypeError("unhashable type: 'list'")
        return None

    async def second(message: Message) -> str | None:
        return "refused by the second hook" if message.id == "central:no" else None

    services = FakeServices(tmp_path)
    rejections: list[receiver.Rejection] = []
    batch = [candidate("central:1"), candidate("central:bad"), candidate("central:no")]

    allowed = await verify_candidates(
        "ship1.REQCliCommand.EventACK", batch, rejections, [buggy, second], services
    )

    assert [c.message.id for c in allowed] == ["central:1"]
    assert [(r.msg_id, r.reason) for r in rejections] == [
        ("central:bad", "could not be checked: the check failed (TypeError)"),
        ("central:no", "refused by the second hook"),
    ]
    assert "verify hook failed on message central:bad" in caplog.text
    assert any("could not be checked" in text for _, text in services.reports)
