"""A ship behind a satellite link: 200 commands and a file copy, all exactly once.

``ship1`` reaches the broker only through the fault proxy playing the ``satellite`` profile
(600 ms RTT, 256 kbit/s each way, a black-hole outage of 10 s every minute); ``central`` is
on the broker's own network. Central sends 200 REQCliCommand to ship1 -- each appends its
number to a file on the ship and echoes it -- and, at the same time, copies a random file to
the ship (REQCopySrc to central itself, destination ship1: a software update going out).
Everything shares the one slow link: chunks and requests go down it, replies come up.

Checked: every command ran exactly once on the ship and its reply arrived exactly once on
central; the copy arrived with the source's SHA-256 and central's copyreply says done.

The default run scales the outage schedule by 0.1 (a 1 s outage every 6 s: the same duty
cycle) and copies 1 MiB; ``-m slow`` plays the full profile and copies 5 MiB. Latency and
bandwidth are the profile's in both.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path

import pytest
import trio

from steward_otp.faultproxy import SATELLITE, FaultProxy, Profile
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
COMMANDS = 200
CHUNK = 16_000  # the pull window (64 chunks, 1 MB) crosses the link in ~32 s
ACK_TIMEOUT = 90  # above the window's time in the link's queue plus a full outage


def command(i: int, ran: Path) -> Message:
    return Message(
        to_node="ship1",
        method="REQCliCommand",
        method_args=["bash", "-c", f"echo {i} >> {ran}; echo cmd-{i}"],
        directory="cmds",
        file_name="out.log",
        ack_timeout=ACK_TIMEOUT,
        retries=20,
        reply_ack_timeout=ACK_TIMEOUT,
        reply_retries=20,
        method_timeout=60,
        reply_method="REQToFileAppend",
    )


def warm_up() -> Message:
    return Message(
        to_node="ship1",
        method="REQToFileAppend",
        data=b"up\n",
        directory="warm",
        file_name="up.log",
        ack_timeout=2,
        retries=30,
        reply_method="REQNone",
    )


def copy_request() -> Message:
    return Message(
        to_node="central",
        method="REQCopySrc",
        method_args=["files/big.bin", "ship1", "incoming/big.bin", str(CHUNK), "1200"],
        directory="copies",
        file_name="big.log",
        ack_timeout=ACK_TIMEOUT,
        retries=20,
        method_timeout=60,
    )


async def run_satellite(
    nats_server: NatsServer, base: Path, profile: Profile, size: int, timeout: float
) -> None:
    data = random.Random(size).randbytes(size)
    source = base / "central" / "data" / "files" / "big.bin"
    source.parent.mkdir(parents=True)
    source.write_bytes(data)
    ran = base / "ship1-ran.log"
    replies = base / "central" / "data" / "cmds" / "ship1" / "out.log"
    copy_reply = base / "central" / "data" / "copies" / "central" / "big.log.copyreply"
    copy_error = copy_reply.with_name("big.log.copyerror")
    target = base / "ship1" / "data" / "incoming" / "big.bin"
    warm = base / "ship1" / "data" / "warm" / "ship1" / "up.log"

    proxy = FaultProxy(("127.0.0.1", nats_server.port), profile=profile, seed=1)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        central = Node(node_config(base, "central", nats_server.url))
        ship1 = Node(node_config(base, "ship1", f"nats://127.0.0.1:{port}"))
        async with central, ship1:
            # The ship's subscriptions cross the link too: until they reach the broker a
            # message to the ship reaches nobody (and waits out its ACKTimeout). One small
            # message through end to end shows they are in place.
            await central.submit([warm_up()])
            await wait_for(lambda: file_text(warm) == "up\n", timeout=60)
            start = trio.current_time()
            await central.submit([copy_request(), *(command(i, ran) for i in range(COMMANDS))])
            await wait_for(
                lambda: (
                    len(file_text(replies).splitlines()) >= COMMANDS
                    and "copyDstDone" in file_text(copy_reply)
                ),
                timeout=timeout,
            )
            elapsed = trio.current_time() - start
            await trio.sleep(2 * profile.latency + 1)  # room for a late duplicate
        nursery.cancel_scope.cancel()

    expected = [f"cmd-{i}" for i in range(COMMANDS)]
    assert sorted(file_text(replies).splitlines()) == sorted(expected)
    runs = Counter(file_text(ran).split())
    assert runs == Counter({str(i): 1 for i in range(COMMANDS)})
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert file_text(copy_error) == ""
    # The link was really that bad: the file crossed a 256 kbit/s link, outages happened.
    assert profile.bandwidth is not None
    assert elapsed >= size / profile.bandwidth
    assert proxy.stats.bytes_down >= size
    assert proxy.stats.outages >= 1
    print(
        f"satellite ({profile.describe()}): {COMMANDS} commands and {size // MIB} MiB copy "
        f"in {elapsed:.1f} s; {proxy.stats.outages} outages, up {proxy.stats.bytes_up} B, "
        f"down {proxy.stats.bytes_down} B, connections {proxy.stats.connections}"
    )


async def test_commands_and_a_copy_cross_a_satellite_link_exactly_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    await run_satellite(nats_server, tmp_path, SATELLITE.scaled(0.1), 1 * MIB, timeout=150)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_commands_and_a_5_mib_copy_cross_the_full_satellite_profile(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    await run_satellite(nats_server, tmp_path, SATELLITE, 5 * MIB, timeout=700)
