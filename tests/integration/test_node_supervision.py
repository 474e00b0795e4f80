"""The node's supervision tree at work: crashes are contained (a handler's to its run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.handlers import HandlerContext, handler
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.integration.test_delivery import append_message
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


@handler("REQExplode", description="a handler with a bug")
async def explode(ctx: HandlerContext, msg: Message) -> bytes | None:
    raise ZeroDivisionError("bug in a handler")


async def test_a_crashing_handler_run_ends_alone_and_other_subjects_keep_flowing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url), handlers=[explode])
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url), handlers=[explode])
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    error_reply = tmp_path / "central" / "data" / "boom" / "ship1" / "boom.log.error"
    async with central, ship1:
        await central.submit(
            [
                Message(
                    to_node="ship1",
                    method="REQExplode",
                    ack_timeout=2,
                    retries=2,
                    directory="boom",
                    file_name="boom.log",
                )
            ]
        )

        def crashes() -> int:
            entry = ship1.snapshot().find("node/inbound/REQExplode")
            return int(entry.info.get("handler_crashes", 0)) if entry is not None else 0

        await wait_for(lambda: crashes() == 1)
        await wait_for(lambda: "handler crashed: ZeroDivisionError" in file_text(error_reply))
        await central.submit([append_message("ship1", f"{i}\n") for i in range(20)])
        await wait_for(lambda: len(file_text(out).splitlines()) == 20)
        for method in ("REQExplode", "REQToFileAppend"):
            entry = ship1.snapshot().find(f"node/inbound/{method}")
            assert entry is not None and entry.restart_count == 0, method
        # the crashing message ran once: it was not retried into a crash loop
        assert crashes() == 1
