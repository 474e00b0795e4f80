"""Both nodes behind a flaky link whose connections are reset every few seconds.

``central`` and ``ship1`` each reach the broker through their own fault proxy playing the
``flaky`` profile (jitter, 1 Mbit/s, short outages, every connection reset now and then),
its schedule sped up so that a short run sees many resets. Messages both ways, in
batches over time, must all arrive exactly once: a reset loses whatever was in flight on
that connection (NATS does not resend it), so only the outbox's retries bring it through.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import trio

from steward_otp.faultproxy import FLAKY, FaultProxy, Profile
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration


def append(to_node: str, line: str) -> Message:
    return Message(
        to_node=to_node,
        method="REQToFileAppend",
        data=f"{line}\n".encode(),
        directory="out",
        file_name="out.log",
        ack_timeout=1,
        retries=200,
        reply_method="REQNone",
    )


async def run_flaky(
    nats_server: NatsServer, base: Path, profile: Profile, seconds: float, seed: int
) -> None:
    rng = random.Random(seed)
    proxies = {
        name: FaultProxy(("127.0.0.1", nats_server.port), profile=profile, seed=seed + i)
        for i, name in enumerate(("central", "ship1"))
    }
    sent: dict[str, list[str]] = {"central": [], "ship1": []}
    async with trio.open_nursery() as nursery:
        ports = {name: await nursery.start(proxy.serve) for name, proxy in proxies.items()}
        nodes = {
            name: Node(node_config(base, name, f"nats://127.0.0.1:{port}"))
            for name, port in ports.items()
        }
        async with nodes["central"], nodes["ship1"]:
            deadline = trio.current_time() + seconds
            sequence = 0
            while trio.current_time() < deadline:
                sender, receiver = rng.choice([("central", "ship1"), ("ship1", "central")])
                batch = []
                for _ in range(rng.randint(1, 10)):
                    sequence += 1
                    batch.append(f"{sender}#{sequence}")
                await nodes[sender].submit([append(receiver, line) for line in batch])
                sent[receiver] += batch
                await trio.sleep(rng.uniform(0.01, 0.1))

            def out(name: str) -> list[str]:
                return file_text(base / name / "data" / "out" / name / "out.log").splitlines()

            await wait_for(
                lambda: all(set(out(n)) >= set(lines) for n, lines in sent.items()), timeout=90
            )
            await trio.sleep(1.5)  # a late duplicate would show now
        nursery.cancel_scope.cancel()
    resets = sum(p.stats.resets for p in proxies.values())
    for name, lines in sent.items():
        counts = Counter(out(name))
        assert counts == Counter(lines), f"seed {seed}: {name} got a wrong set of lines"
    assert resets >= 2, "the link was not flaky enough to prove anything"
    print(
        f"flaky ({profile.describe()}): {sum(map(len, sent.values()))} messages, "
        f"{resets} connection resets, {sum(p.stats.outages for p in proxies.values())} outages"
    )


async def test_messages_cross_a_flaky_resetting_link_exactly_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    await run_flaky(nats_server, tmp_path, FLAKY.scaled(0.1), seconds=5, seed=5)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_messages_cross_the_full_flaky_profile_exactly_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    await run_flaky(nats_server, tmp_path, FLAKY, seconds=90, seed=6)
