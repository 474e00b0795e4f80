"""The web view's door, without a browser: the token, the login, 401 without them, CSRF and
cross-site refusals, and the CLI's validation answering bad requests."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from steward_otp.asgi_serve import ServeError
from steward_otp.node import Node
from steward_otp.web import WebServer
from steward_otp.web.sessions import Sessions
from steward_otp.web.token import TokenCheck, create_token, token_path
from tests.conftest import NatsServer, free_loopback_port
from tests.nodes import node_config

pytestmark = pytest.mark.integration

PAGES = ["/", "/fleet", "/queue", "/send", "/errors", "/nodes/central", "/nodes/ship1"]
API_GETS = [
    "/api/session",
    "/api/fleet",
    "/api/status",
    "/api/tree",
    "/api/methods",
    "/api/queue",
    "/api/nodes/central/tree/events",
    "/api/replies?ids=x",
    "/api/errors",
    "/api/errors/events",
    "/api/no-such-thing",
]
POSTS = ["/api/queue/cancel", "/api/queue/retry", "/api/send", "/logout"]


class Central:
    """A central node serving the web view, and its token."""

    def __init__(self, node: Node, url: str, token: str) -> None:
        self.node = node
        self.url = url
        self.token = token

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=20, **kwargs)  # type: ignore[arg-type]

    async def login(self, client: httpx.AsyncClient) -> str:
        """Log ``client`` in (it keeps the session cookie); the session's CSRF token."""
        answer = await client.post(
            "/login",
            data={"token": self.token, "next": "/queue"},
            headers={"Origin": self.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/queue"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie, cookie
        return str((await client.get("/api/session")).json()["csrf"])


@pytest.fixture
async def central(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Central]:
    port = free_loopback_port()
    config = node_config(tmp_path, "central", nats_server.url, web_listener=f"127.0.0.1:{port}")
    token = create_token(config.etc_dir)
    async with Node(config) as node:
        yield Central(node, f"http://127.0.0.1:{port}", token)


async def test_without_a_token_every_page_and_api_answers_401(central: Central) -> None:
    async with central.client() as client:
        for path in PAGES + API_GETS:
            answer = await client.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Bearer")
            if path.startswith("/api/"):
                assert "401 unauthorized" in answer.json()["error"]
            else:
                assert "/login?next=" in answer.text
        for path in POSTS:
            answer = await client.post(path, json={"id": "x"})
            assert answer.status_code == 401, path
        # A wrong bearer token, or a made-up session cookie: 401 too.
        bad_bearer = {"Authorization": "Bearer not-the-token"}
        for path in ["/fleet", "/api/status"]:
            assert (await client.get(path, headers=bad_bearer)).status_code == 401
            made_up = {"Cookie": "steward_web_session=made-up"}
            assert (await client.get(path, headers=made_up)).status_code == 401
        # The login form and the static files need no token, and show nothing of the node.
        login = await client.get("/login")
        assert login.status_code == 200 and 'name="token"' in login.text
        assert (await client.get("/static/common.js")).status_code == 200
        assert "default-src 'none'" in login.headers["content-security-policy"]


async def test_the_bearer_token_opens_the_api_and_a_wrong_login_is_refused(
    central: Central,
) -> None:
    async with central.client(headers={"Authorization": f"Bearer {central.token}"}) as api:
        status = (await api.get("/api/status")).json()["status"]
        assert status["node"] == "central"
        assert (await api.get("/fleet")).status_code == 200
    async with central.client() as client:
        answer = await client.post(
            "/login", data={"token": "guess"}, headers={"Origin": central.url}
        )
        assert answer.status_code == 401 and "not valid" in answer.text
        assert "set-cookie" not in answer.headers
        # After the login the browser goes to a page of this view, never to another site.
        for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            answer = await client.post("/login", data={"token": central.token, "next": elsewhere})
            assert answer.status_code == 303 and answer.headers["location"] == "/fleet"


async def test_a_cross_site_post_is_refused(central: Central) -> None:
    async with central.client() as client:
        csrf = await central.login(client)
        # Something to cancel: a command for a node that is not there stays queued.
        sent = await client.post(
            "/api/send",
            json={"nodes": ["ship9"], "command": "uptime"},
            headers={"X-CSRF-Token": csrf, "Origin": central.url},
        )
        assert sent.status_code == 200, sent.text
        [answer] = sent.json()["answers"]
        msg_id = answer["id"]

        async def state() -> str:
            rows = (await client.get("/api/queue")).json()["messages"]
            return str({r["id"]: r["state"] for r in rows}[msg_id])

        cross_site = [
            {"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
            {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
            {"X-CSRF-Token": csrf, "Origin": "null"},
            {"Origin": central.url},  # no CSRF token
            {"X-CSRF-Token": "forged", "Origin": central.url},
        ]
        for headers in cross_site:
            answer = await client.post("/api/queue/cancel", json={"id": msg_id}, headers=headers)
            assert answer.status_code == 403, headers
            assert "403 forbidden" in answer.json()["error"]
            assert await state() in ("queued", "in_flight")
        # A cross-site login form is refused as well (login CSRF).
        evil_login = await client.post(
            "/login", data={"token": central.token}, headers={"Origin": "http://evil.example"}
        )
        assert evil_login.status_code == 403
        # The view's own page, with the session's token: done.
        answer = await client.post(
            "/api/queue/cancel",
            json={"id": msg_id},
            headers={"X-CSRF-Token": csrf, "Origin": central.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert answer.status_code == 200 and answer.json()["done"] is True
        assert await state() == "cancelled"
        # After logout the cookie opens nothing.
        out = await client.post("/logout", json={}, headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200
        assert (await client.get("/api/status")).status_code == 401


async def test_bad_requests_are_answered_with_the_field_the_value_and_what_is_allowed(
    central: Central,
) -> None:
    async with central.client(headers={"Authorization": f"Bearer {central.token}"}) as api:
        answer = await api.post("/api/send", json={"nodes": "ship1", "command": "uptime"})
        assert answer.status_code == 400
        assert answer.json()["error"].startswith("field \"nodes\": value 'ship1'")
        answer = await api.post("/api/send", json={"document": '[{"toNode": "ship1"}]'})
        assert answer.status_code == 400 and answer.json()["sent"] is False
        [rejected] = answer.json()["answers"]
        assert rejected["status"] == "rejected" and rejected["field"] == "method"
        answer = await api.get("/api/replies?ids=a&timeout=-1")
        assert answer.status_code == 400 and 'field "timeout"' in answer.json()["error"]
        answer = await api.post("/api/queue/cancel", json={})
        assert answer.status_code == 400 and 'field "id"' in answer.json()["error"]
        answer = await api.post("/api/queue/cancel", content=b"id=1")
        assert answer.status_code == 415
        answer = await api.get("/api/queue?states=nonsense")
        assert answer.status_code == 400 and "nonsense" in answer.json()["error"]
        answer = await api.get("/api/errors?lines=many")
        assert answer.status_code == 400 and 'field "lines"' in answer.json()["error"]


def test_web_token_prints_a_new_token_once_and_keeps_only_its_hash(tmp_path: Path) -> None:
    def make() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "steward_otp", "web", "token", "--home", str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout.strip()

    first = make()
    path = token_path(tmp_path / "etc")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first not in path.read_text() and len(first) >= 43
    check = TokenCheck(tmp_path / "etc")
    assert check.matches(first)
    second = make()
    assert second != first
    assert check.matches(second) and not check.matches(first)


async def test_a_node_without_web_listener_serves_no_web_view(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with Node(node_config(tmp_path, "ship1", nats_server.url)) as node:
        assert "web" not in [c.id for c in node.snapshot().children]


async def test_an_address_in_use_fails_the_start_naming_web_listener(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    node = Node(node_config(tmp_path, "central", nats_server.url))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = WebServer(
            node, f"127.0.0.1:{port}", etc_dir=tmp_path / "etc", error_log=tmp_path / "e.log"
        )
        with pytest.RaisesGroup(
            pytest.RaisesExc(ServeError, match=rf"web_listener = '127.0.0.1:{port}'"),
            flatten_subgroups=True,
        ):
            async with trio.open_nursery() as nursery:
                await nursery.start(server.run)


def test_sessions_end_when_idle_too_long_at_their_lifetime_and_beyond_the_limit() -> None:
    now = [0.0]
    sessions = Sessions(idle=10, lifetime=25, limit=2, clock=lambda: now[0])
    first = sessions.create()
    now[0] = 9
    assert sessions.get(first.id) is first  # used: idle time starts again
    now[0] = 18
    assert sessions.get(first.id) is first
    now[0] = 26
    assert sessions.get(first.id) is None  # older than its lifetime
    second = sessions.create()
    now[0] = 37
    assert sessions.get(second.id) is None  # idle for 11 s
    a, b, c = sessions.create(), sessions.create(), sessions.create()
    assert sessions.get(a.id) is None and sessions.get(b.id) is b and sessions.get(c.id) is c
    assert b.csrf_matches(b.csrf) and not b.csrf_matches(c.csrf) and not b.csrf_matches(None)
    sessions.drop(b.id)
    assert sessions.get(b.id) is None
