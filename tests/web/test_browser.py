"""The web view in a real browser (Debian's chromium, headless, driven by Playwright) against
real nodes: central serving the view, ship1 and ship2, each a ``steward-otp run`` process on a
real nats-server. Each test writes a screenshot of the pages it saw under its tmp_path."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from steward_otp.web.token import create_token
from tests.conftest import NatsServer, free_loopback_port
from tests.nodes import NodeProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
"""How long an expectation waits in the browser (the machine is small and shared)."""

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium "
        "(.ci/run installs it with apt-get install chromium)",
    ),
]

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
expect.set_options(timeout=WAIT_MS)


class Fleet:
    """central (serving the web view), ship1 and ship2 running, and the view's token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token


async def _start(processes: list[NodeProcess], url: str, token: str) -> None:
    """Start the nodes; return once central has heard a hello from each ship."""
    for process in processes:
        await process.start()
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=5
    ) as client:
        with trio.fail_after(60):
            while True:
                answer = await client.get("/api/fleet")
                if answer.status_code == 200:
                    rows = answer.json()["nodes"]
                    heard = {r["node"] for r in rows if r["lastHello"] is not None}
                    if {"ship1", "ship2"} <= heard:
                        return
                await trio.sleep(0.2)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    broker = NatsServer(base / "nats")
    broker.start()
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}"
    token = create_token(base / "central" / "etc")
    hello = ("--start-pub-hello", "1")  # the last value given wins
    processes = [
        NodeProcess(
            base / "central", "central", broker.url, *hello, "--web-listener", f"127.0.0.1:{port}"
        ),
        NodeProcess(base / "ship1", "ship1", broker.url, *hello),
        NodeProcess(base / "ship2", "ship2", broker.url, *hello),
    ]
    try:
        trio.run(_start, processes, url, token)
        yield Fleet(url, token)
    finally:
        for process in processes:
            process.kill(signal.SIGTERM)
        broker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Once trio-asyncio is imported (nodes run in-process by earlier tests), a new asyncio
    # loop is trio-asyncio's, which Playwright's own loop cannot be; with a policy set
    # explicitly it makes plain asyncio loops again. None afterwards: back to the default.
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        asyncio.set_event_loop_policy(None)


@pytest.fixture
def page(browser: Any, fleet: Fleet) -> Iterator[Any]:
    context = browser.new_context(base_url=fleet.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def log_in(page: Any, fleet: Fleet, path: str = "/fleet") -> None:
    """Open ``path``: the view sends the browser to the login form; log in with the token."""
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#token", fleet.token)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def test_log_in_and_see_central_and_two_ships(page: Any, fleet: Fleet, tmp_path: Path) -> None:
    page.goto("/fleet")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Ffleet|/login\?next=/fleet"))
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    expect(page.locator("#problem")).to_contain_text("not valid")
    page.screenshot(path=tmp_path / "login.png", full_page=True)
    log_in(page, fleet)
    rows = page.locator("#fleet tbody tr")
    for name in ("central", "ship1", "ship2"):
        expect(page.locator(f'#fleet tr[data-node="{name}"]')).to_be_visible()
    expect(page.locator('#fleet tr[data-node="ship1"] td.hello')).to_contain_text("ago")
    expect(page.locator('#fleet tr[data-node="ship2"] td.hello')).to_contain_text("ago")
    expect(page.locator("#summary")).to_contain_text("connected")
    assert rows.count() >= 3
    page.screenshot(path=tmp_path / "fleet.png", full_page=True)


def test_open_ship1s_tree(page: Any, fleet: Fleet, tmp_path: Path) -> None:
    log_in(page, fleet)
    page.click('#fleet tr[data-node="ship1"] a[href="/nodes/ship1"]')
    expect(page).to_have_url(re.compile(r"/nodes/ship1$"))
    tree = page.locator("#tree pre")
    # ship1 answers REQOpProcessList with its tree as `steward-otp tree` prints it.
    expect(tree).to_contain_text("RESTARTS")
    expect(tree).to_contain_text("inbound")
    expect(tree).to_contain_text("REQCliCommand")
    expect(page.locator("#tree-state")).to_contain_text("as ship1 answered")
    page.screenshot(path=tmp_path / "node-ship1.png", full_page=True)
    # central's own tree is live: a table of processes with states and restart counts.
    page.goto("/nodes/central")
    expect(page.locator('#tree tr[data-process="web"] td.state')).to_have_text("running")
    expect(page.locator('#tree tr[data-process="control"] td.restarts')).to_have_text("0")
    expect(page.locator("#tree-state")).to_contain_text("live")
    page.screenshot(path=tmp_path / "node-central.png", full_page=True)


def test_a_node_that_does_not_answer_is_said_so(page: Any, fleet: Fleet, tmp_path: Path) -> None:
    log_in(page, fleet, "/nodes/ship9")
    expect(page.locator("#tree-state")).to_contain_text("ship9 did not answer REQOpProcessList")
    expect(page.locator("#refresh")).to_be_visible()
    page.screenshot(path=tmp_path / "node-offline.png", full_page=True)


def test_send_uptime_to_ship1_and_ship2_and_see_both_outputs(
    page: Any, fleet: Fleet, tmp_path: Path
) -> None:
    log_in(page, fleet, "/send")
    page.check('#node-choices input[value="ship1"]')
    page.check('#node-choices input[value="ship2"]')
    page.fill("#command", "uptime")
    page.click("#send-button")
    for name in ("ship1", "ship2"):
        panel = page.locator(f'#replies article[data-node="{name}"]')
        expect(panel.locator("pre.output")).to_contain_text("load average")
        expect(panel.locator(".state")).to_have_text("replied")
    expect(page.locator("#send-summary")).to_have_text("2/2 replied")
    page.screenshot(path=tmp_path / "send.png", full_page=True)


def test_the_reply_watch_opens_again_when_its_stream_breaks(
    page: Any, fleet: Fleet, tmp_path: Path
) -> None:
    streams: list[str] = []

    def first_one_breaks(route: Any) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/api/replies\?"), first_one_breaks)
    log_in(page, fleet, "/send")
    page.check('#node-choices input[value="ship1"]')
    page.check('#node-choices input[value="ship2"]')
    page.fill("#command", "echo again")
    page.fill("#timeout", "60")
    page.click("#send-button")
    for name in ("ship1", "ship2"):
        panel = page.locator(f'#replies article[data-node="{name}"]')
        expect(panel.locator("pre.output")).to_have_count(1)
        expect(panel.locator("pre.output")).to_have_text("again\n")
    expect(page.locator("#send-summary")).to_have_text("2/2 replied")
    assert len(streams) == 2, streams
    # Opened again with the time that was left, for the same messages.
    first, second = (dict(httpx.URL(url).params) for url in streams)
    assert first["ids"] == second["ids"] and first["afterSeq"] == second["afterSeq"]
    assert 1 <= int(second["timeout"]) <= 60
    page.screenshot(path=tmp_path / "send-again.png", full_page=True)


def test_cancel_a_queued_message_for_an_offline_node(
    page: Any, fleet: Fleet, tmp_path: Path
) -> None:
    log_in(page, fleet, "/send")
    page.fill("#other-nodes", "ship3")
    page.fill("#command", "uptime")
    page.fill("#timeout", "1")
    page.click("#send-button")
    accepted = page.locator("#answers li.accepted")
    expect(accepted).to_contain_text("ship3: accepted, id ")
    msg_id = (accepted.text_content() or "").rsplit("id ", 1)[1].strip()
    expect(page.locator("#send-summary")).to_contain_text("ship3 still queued")
    page.goto("/queue")
    row = page.locator(f'#queue tr[data-id="{msg_id}"]')
    expect(row.locator("td.state")).to_have_text(re.compile("queued|in_flight"))
    page.screenshot(path=tmp_path / "queue-before.png", full_page=True)
    row.locator("button.cancel").click()
    expect(row.locator("td.state")).to_have_text("cancelled")
    page.screenshot(path=tmp_path / "queue.png", full_page=True)
    # Retry puts it back in the queue (ship3 gets it if it ever comes); cancel it again.
    row.locator("button.retry").click()
    expect(row.locator("td.state")).to_have_text(re.compile("queued|in_flight"))
    row.locator("button.cancel").click()
    expect(row.locator("td.state")).to_have_text("cancelled")


def test_errors_page_shows_a_failing_command_live(page: Any, fleet: Fleet, tmp_path: Path) -> None:
    log_in(page, fleet, "/errors")
    expect(page.locator("#log-state")).to_contain_text("live")
    # A command failing on ship1 is reported to the central error log, which the page tails.
    with httpx.Client(
        base_url=fleet.url, headers={"Authorization": f"Bearer {fleet.token}"}, timeout=20
    ) as api:
        answer = api.post("/api/send", json={"nodes": ["ship1"], "command": "exit 7"})
        assert answer.status_code == 200, answer.text
    expect(page.locator("#log")).to_contain_text("exit status 7")
    page.screenshot(path=tmp_path / "errors.png", full_page=True)
