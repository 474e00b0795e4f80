"""REQHttpGet and the deprecated REQHttpGetScheduled across two real nodes.

ship1 fetches from a server the test runs on 127.0.0.1; the body (or the error) comes back
to central's data folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_otp.message import Message
from steward_otp.node import Node
from tests.conftest import NatsServer, free_loopback_port
from tests.integration.local_http import local_http_server
from tests.nodes import file_text, node_config, wait_for

pytestmark = pytest.mark.integration

ROUTES = {"/hello": (200, b"hello from the test server\n"), "/broken": (500, b"oops\n")}


def http_get(url: str, **fields: object) -> Message:
    settings: dict[str, object] = {
        "to_node": "ship1",
        "method": "REQHttpGet",
        "method_args": [url],
        "directory": "http",
        "file_name": "body.txt",
        "ack_timeout": 5,
        "retries": 3,
        "method_timeout": 10,
        "reply_method": "REQToFileAppend",
    }
    settings.update(fields)
    return Message(**settings)  # type: ignore[arg-type]


def results(base: Path) -> tuple[Path, Path]:
    folder = base / "central" / "data" / "http" / "ship1"
    return folder / "body.txt", folder / "body.txt.error"


async def test_http_get_replies_with_the_body(nats_server: NatsServer, tmp_path: Path) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    body, error = results(tmp_path)
    async with local_http_server(ROUTES) as server, central, ship1:
        await central.submit([http_get(server.url("/hello"))])
        await wait_for(lambda: file_text(body) == "hello from the test server\n")
        assert server.count("/hello") == 1
    assert not error.exists()


async def test_a_page_that_is_not_200_is_an_error_reply_naming_the_status(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    body, error = results(tmp_path)
    async with local_http_server(ROUTES) as server, central, ship1:
        missing, broken = server.url("/missing"), server.url("/broken")
        await central.submit([http_get(missing), http_get(broken)])
        await wait_for(lambda: f"not 200, were 404, bailing out: {missing}" in file_text(error))
        await wait_for(lambda: f"not 200, were 500, bailing out: {broken}" in file_text(error))
    assert file_text(body) == ""


async def test_transport_failures_and_bad_urls_are_error_replies_with_the_reason(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    _body, error = results(tmp_path)
    closed = f"http://127.0.0.1:{free_loopback_port()}/nobody-listens"
    async with central, ship1:
        await central.submit(
            [http_get(closed), http_get("ftp://127.0.0.1/file"), http_get("", method_args=[])]
        )
        await wait_for(lambda: "get failed" in file_text(error) and closed in file_text(error))
        await wait_for(lambda: "'ftp://127.0.0.1/file' is not http or https" in file_text(error))
        await wait_for(lambda: 'field "methodArgs": value [] names no URL' in file_text(error))


async def test_deprecated_http_get_scheduled_fetches_now_and_then_every_interval(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    body, error = results(tmp_path)
    async with local_http_server(ROUTES) as server, central, ship1:
        await central.submit(
            [
                http_get(
                    server.url("/hello"),
                    method="REQHttpGetScheduled",
                    method_args=[server.url("/hello"), "1", "1"],
                ),
                http_get("", method="REQHttpGetScheduled", method_args=["http://x/", "soon", "1"]),
            ]
        )
        # One run now, then one a second for a minute: three runs take about two seconds.
        await wait_for(lambda: file_text(body).count("hello from the test server\n") >= 3)
        assert server.count("/hello") >= 3
        await wait_for(lambda: "field \"methodArgs[1]\": value 'soon'" in file_text(error))
