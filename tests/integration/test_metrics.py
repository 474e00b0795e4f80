"""The /metrics endpoint of running nodes, scraped over HTTP and parsed as Prometheus does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from steward_otp.handlers import HandlerContext, handler
from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer, free_loopback_port
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_config(tmp_path: Path, name: str, url: str) -> tuple[Node, str]:
    """A node serving metrics on a free loopback port, and its /metrics URL."""
    address = f"127.0.0.1:{free_loopback_port()}"
    node = Node(node_config(tmp_path, name, url, prom_host_and_port=address))
    return node, f"http://{address}/metrics"


async def scrape(url: str) -> Samples:
    """GET ``url`` and parse it with prometheus-client's own parser."""
    async with httpx.AsyncClient() as client:
        response = await client.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels}``, or None when it is not there."""
    return samples.get((name, frozenset(labels.items())))


def append_to(to_node: str, text: str, **fields: object) -> Message:
    """A REQToFileAppend writing ``text`` to ``data/out/<toNode>/out.log`` on ``to_node``."""
    settings: dict[str, object] = {
        "to_node": to_node,
        "method": "REQToFileAppend",
        "directory": "out",
        "file_name": "out.log",
        "data": text.encode(),
        "ack_timeout": 5,
        "retries": 10,
        "reply_method": "REQNone",
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


async def test_metrics_endpoint_of_a_running_node_parses_as_prometheus_text(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node, url = metrics_config(tmp_path, "central", nats_server.url)
    async with node:
        assert node.snapshot().find("node/metrics") is not None
        await wait_for(lambda: node.connection_state() == "connected")
        samples = await scrape(url)
        assert value(samples, "steward_node_info", nodeName="central", broker=nats_server.url)
        assert (value(samples, "steward_processes_total") or 0) >= 10
        assert value(samples, "steward_nats_connection_state", state="connected") == 1
        assert value(samples, "steward_nats_connection_state", state="closed") == 0
        assert value(samples, "steward_supervisor_restarts_total", path="node/bridge") == 0
        assert value(samples, "steward_processes_all_running", processName="node/metrics") == 1
        assert value(samples, "steward_nats_delivered_total") is not None
        assert any(name == "steward_build_version" for name, _ in samples)
        async with httpx.AsyncClient() as client:
            missing = await client.get(url.removesuffix("/metrics") + "/other", timeout=10)
        assert missing.status_code == 404
        assert "/metrics" in missing.text


async def test_a_node_without_prom_host_and_port_serves_no_metrics(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with Node(node_config(tmp_path, "ship1", nats_server.url)) as node:
        assert node.snapshot().find("node/metrics") is None
        assert b"steward_processes_total" in node.metrics.render()


async def test_delivered_counter_moves_when_central_sends_to_ship1(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central, central_url = metrics_config(tmp_path, "central", nats_server.url)
    ship1, ship1_url = metrics_config(tmp_path, "ship1", nats_server.url)
    out = tmp_path / "ship1" / "data" / "out" / "ship1" / "out.log"
    async with central, ship1:
        before = await scrape(central_url)
        delivered_before = value(before, "steward_nats_delivered_total")
        assert delivered_before is not None
        await central.submit([append_to("ship1", f"line {i}\n") for i in range(5)])
        await wait_for(lambda: len(file_text(out).splitlines()) == 5)
        await wait_for(lambda: central.outbox.stats.delivered >= delivered_before + 5)

        after = await scrape(central_url)
        delivered_after = value(after, "steward_nats_delivered_total")
        assert delivered_after is not None and delivered_after >= delivered_before + 5
        # Each node has its own registry: ship1 reports ship1's figures.
        on_ship1 = await scrape(ship1_url)
        assert value(on_ship1, "steward_node_info", nodeName="ship1", broker=nats_server.url)
        subject = "ship1.REQToFileAppend.EventACK"
        assert value(on_ship1, "steward_handler_runs_total", subject=subject) == 5
        assert value(on_ship1, "steward_inbound_messages_received_total", subject=subject) == 5


@handler("REQCrashTest", description="crashes, for the handler crash metric")
async def crash(ctx: HandlerContext, msg: Message) -> bytes | None:
    raise RuntimeError("induced crash")


async def test_a_handler_crash_is_counted_and_restarts_nothing(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_loopback_port()}"
    config = node_config(tmp_path, "central", nats_server.url, prom_host_and_port=address)
    url = f"http://{address}/metrics"
    path = "node/inbound/REQCrashTest"
    subject = "central.REQCrashTest.EventACK"
    async with Node(config, handlers=[crash]) as node:
        before = await scrape(url)
        assert value(before, "steward_handler_crashes_total", subject=subject) == 0
        await node.submit([Message(to_node="central", method="REQCrashTest", ack_timeout=5)])

        def crashed() -> bool:
            entry = node.snapshot().find(path)
            return entry is not None and entry.info.get("handler_crashes") == 1

        await wait_for(crashed)
        after = await scrape(url)
        assert value(after, "steward_handler_crashes_total", subject=subject) == 1
        assert value(after, "steward_supervisor_restarts_total", path=path) == 0
        assert value(after, "steward_processes_all_running", processName=path) == 1


async def test_queue_depth_of_offline_nodes_equals_the_messages_held_for_them(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central, url = metrics_config(tmp_path, "central", nats_server.url)
    async with central:
        # Nobody serves ship2 or ship3: each attempt waits out its ACK timeout.
        held = [append_to("ship2", "a", ack_timeout=1, retries=1000) for _ in range(3)]
        held += [append_to("ship3", "b", ack_timeout=1, retries=1000) for _ in range(2)]
        await central.submit(held)
        samples: Samples = {}

        async def depths_reported() -> bool:
            nonlocal samples
            samples = await scrape(url)
            return value(samples, "steward_queue_depth", toNode="ship2") == 3

        await wait_for_async(depths_reported)
        assert value(samples, "steward_queue_depth", toNode="ship3") == 2
        assert await central.store.queue_depths() == {"ship2": 3, "ship3": 2}
        assert value(samples, "steward_db_messages_current") == 5
        queued = value(samples, "steward_outbox_messages", state="queued") or 0
        in_flight = value(samples, "steward_outbox_messages", state="in_flight") or 0
        assert queued + in_flight == 5


async def wait_for_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Like ``wait_for`` for an async predicate (one scrape per try)."""
    with trio.fail_after(timeout):
        while not await predicate():
            await trio.sleep(0.1)
