"""`steward-otp broker-config` against a real nats-server started from the generated file.

The generated permissions let the fleet work (a command from central runs on ship1 and
its reply comes back), while a node cannot read another node's subjects or inboxes, and a
client without a known nkey cannot connect at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import trio_asyncio
from typer.testing import CliRunner

from steward_otp.cli import app
from steward_otp.message import Message
from steward_otp.node import Node
from steward_otp.security.broker_config import BrokerConfigError, write_broker_config
from steward_otp.transport import ConnectionState
from tests.conftest import NatsServer
from tests.nodes import echo_command, file_text, node_config, wait_for

pytestmark = pytest.mark.integration

NODES = ["central", "ship1", "ship2"]


@pytest.fixture
def fleet_broker(tmp_path: Path) -> Iterator[tuple[NatsServer, Path]]:
    """nats-server started from a generated configuration, and the folder with the seeds."""
    folder = tmp_path / "broker"
    result = CliRunner().invoke(
        app, ["broker-config", "--nodes", ",".join(NODES), "--out", str(folder)]
    )
    assert result.exit_code == 0, result.output
    server = NatsServer(tmp_path / "nats", config_file=folder / "nats-server.conf")
    server.start()
    yield server, folder
    server.stop()


async def _refused_subscriptions(url: str, seed: Path, subjects: list[str]) -> list[str]:
    """Connect as the owner of ``seed``, subscribe to ``subjects``; the server's errors."""
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    nc = await nats.connect(
        url, nkeys_seed=str(seed), error_cb=on_error, allow_reconnect=False, connect_timeout=5
    )
    try:
        for subject in subjects:
            await nc.subscribe(subject)
        await nc.flush(timeout=5)
        for _ in range(200):  # -ERR lines are read before the PONG; the callbacks run soon after
            if len(errors) >= len(subjects):
                break
            await asyncio.sleep(0.01)
    finally:
        await nc.close()
    return errors


async def _connect_error(url: str, seed: Path | None) -> str:
    """What connecting with ``seed`` (or none) ends with: "" when it connects."""
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    options = {"nkeys_seed": str(seed)} if seed else {}
    try:
        nc = await nats.connect(
            url, error_cb=on_error, allow_reconnect=False, connect_timeout=5, **options
        )
    except Exception as exc:  # nats-py raises its own error classes
        return " ".join([*errors, str(exc)])
    await nc.close()
    return ""


def command() -> Message:
    return echo_command("permitted", "perm")


async def test_the_generated_permissions_let_the_fleet_work_and_keep_nodes_apart(
    fleet_broker: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, folder = fleet_broker
    central = Node(
        node_config(tmp_path, "central", server.url, nkey_seed_file=folder / "central.nkey")
    )
    ship1 = Node(node_config(tmp_path, "ship1", server.url, nkey_seed_file=folder / "ship1.nkey"))
    result = tmp_path / "central" / "data" / "perm" / "ship1" / "out.txt"
    async with central, ship1:
        await central.submit([command()])
        await wait_for(lambda: file_text(result) == "permitted\n")

    async with trio_asyncio.open_loop():
        refused = await trio_asyncio.aio_as_trio(_refused_subscriptions)(
            server.url,
            folder / "ship2.nkey",
            [
                "ship1.REQCliCommand.EventACK",
                "ship1.>",
                "central.*.EventACK",
                "_SOTP.INBOX.central.>",
                "_SOTP.INBOX.>",
                "errorCentral.REQErrorLog.EventACK",
                ">",
            ],
        )
        allowed = await trio_asyncio.aio_as_trio(_refused_subscriptions)(
            server.url,
            folder / "ship2.nkey",
            ["ship2.REQCliCommand.EventACK", "ship2.REQSUBCopyDst.abc.EventACK"],
        )
        anonymous = await trio_asyncio.aio_as_trio(_connect_error)(server.url, None)

    assert len(refused) == 7, refused
    assert all("permissions violation" in e.lower() for e in refused), refused
    assert allowed == []
    assert "authorization violation" in anonymous.lower(), anonymous


def test_names_the_broker_cannot_keep_apart_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match=r"'ship' and 'ship\.7'"):
        write_broker_config(tmp_path / "a", ["central", "ship", "ship.7"], central="central")
    with pytest.raises(BrokerConfigError, match="not among the nodes"):
        write_broker_config(tmp_path / "b", ["ship1"], central="central")
    with pytest.raises(BrokerConfigError, match="is not valid"):
        write_broker_config(tmp_path / "c", ["central", "sh ip"], central="central")
    write_broker_config(tmp_path / "d", ["central"], central="central")
    with pytest.raises(BrokerConfigError, match="exists"):
        write_broker_config(tmp_path / "d", ["central"], central="central")
    result = CliRunner().invoke(
        app, ["broker-config", "--nodes", "central,central", "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 2
    assert "node name 'central' is given twice" in result.output
    assert not (tmp_path / "e").exists()


def test_the_seeds_are_private(tmp_path: Path) -> None:
    layout = write_broker_config(tmp_path, ["central", "ship1"], central="central")
    for seed in layout.seed_files.values():
        assert seed.stat().st_mode & 0o777 == 0o600
        assert seed.read_text().startswith("SU")


async def test_a_node_with_an_unknown_nkey_is_refused_and_says_so(
    fleet_broker: tuple[NatsServer, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, _folder = fleet_broker
    stranger = write_broker_config(tmp_path / "other", ["central"], central="central")
    node = Node(
        node_config(tmp_path, "central", server.url, nkey_seed_file=stranger.seed_files["central"])
    )
    async with node:
        await wait_for(lambda: "Authorization Violation" in caplog.text)
        assert node.bridge.state is ConnectionState.CONNECTING
    assert "check nkey_seed_file" in caplog.text
