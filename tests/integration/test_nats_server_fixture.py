"""The real broker fixture works with a raw nats-py client driven through trio-asyncio."""

from __future__ import annotations

import os

import nats
import pytest
import trio_asyncio
from nats.aio.msg import Msg

from tests.conftest import NatsServer


async def _request_reply_roundtrip(url: str) -> bytes:
    async with trio_asyncio.open_loop():
        nc = await trio_asyncio.aio_as_trio(nats.connect)(url, max_reconnect_attempts=-1)

        async def echo(msg: Msg) -> None:
            await msg.respond(b"echo:" + msg.data)

        await trio_asyncio.aio_as_trio(nc.subscribe)("greet", cb=echo)
        reply = await trio_asyncio.aio_as_trio(nc.request)("greet", b"hello", timeout=5)
        await trio_asyncio.aio_as_trio(nc.close)()
        return bytes(reply.data)


async def test_raw_nats_client_request_reply_through_trio_asyncio(nats_server: NatsServer) -> None:
    assert await _request_reply_roundtrip(nats_server.url) == b"echo:hello"


async def test_server_restarts_on_the_same_port(nats_server: NatsServer) -> None:
    first_pid = nats_server.pid
    port = nats_server.port
    await nats_server.astop()
    assert not nats_server.running
    await nats_server.astart()
    assert nats_server.port == port
    assert nats_server.pid != first_pid
    assert await _request_reply_roundtrip(nats_server.url) == b"echo:hello"


async def test_jetstream_variant_has_jetstream_enabled(jetstream_server: NatsServer) -> None:
    async with trio_asyncio.open_loop():
        nc = await trio_asyncio.aio_as_trio(nats.connect)(jetstream_server.url)
        js = nc.jetstream()
        info = await trio_asyncio.aio_as_trio(js.account_info)()
        await trio_asyncio.aio_as_trio(nc.close)()
    assert info.limits is not None


async def test_stop_kills_by_pid(nats_server: NatsServer) -> None:
    pid = nats_server.pid
    assert pid is not None
    nats_server.kill()
    assert not nats_server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
