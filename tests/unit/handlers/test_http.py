"""REQHttpGet against a tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from steward_otp.handlers.base import HandlerError
from steward_otp.handlers.http import http_get
from steward_otp.node import Node
from tests.conftest import free_loopback_port
from tests.integration.local_http import local_http_server
from tests.unit.handlers.fakes import FakeServices, context, request
from tests.unit.handlers.loopback_nodes import (
    LoopbackNet,
    file_text,
    message,
    subscriber_restarts,
    wait_for_exact,
    wait_for_text,
)

ROUTES = {"/hello": (200, b"hello from the test server\n"), "/broken": (500, b"oops\n")}

# ----------------------------------------------------------------- the handler, directly


async def test_http_get_returns_the_body_of_a_200(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    async with local_http_server(ROUTES) as server:
        msg = request("REQHttpGet", server.url("/hello"))
        assert await http_get(context(services, msg, seconds=5), msg) == ROUTES["/hello"][1]
        assert server.count("/hello") == 1
    assert services.submitted == []


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/broken", 500)])
async def test_a_page_that_is_not_200_is_a_handler_error_naming_the_status(
    tmp_path: Path, path: str, status: int
) -> None:
    services = FakeServices(tmp_path)
    async with local_http_server(ROUTES) as server:
        msg = request("REQHttpGet", server.url(path))
        with pytest.raises(HandlerError) as raised:
            await http_get(context(services, msg, seconds=5), msg)
    assert str(raised.value) == (f"not 200, were {status}, bailing out: {server.url(path)}")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ((), 'field "methodArgs": value [] names no URL; allowed: an http'),
        (("ftp://127.0.0.1/file",), "value 'ftp://127.0.0.1/file' is not http or https"),
        (("http://[::1",), "value 'http://[::1' is not a URL ("),
    ],
)
async def test_a_bad_url_is_a_handler_error(
    tmp_path: Path, args: tuple[str, ...], complaint: str
) -> None:
    services = FakeServices(tmp_path)
    msg = request("REQHttpGet", *args)
    with pytest.raises(HandlerError) as raised:
        await http_get(context(services, msg, seconds=5), msg)
    assert complaint in str(raised.value)


async def test_a_refused_connection_is_a_handler_error_with_the_reason(tmp_path: Path) -> None:
    services = FakeServices(tmp_path)
    url = f"http://127.0.0.1:{free_loopback_port()}/nobody-listens"
    msg = request("REQHttpGet", url)
    with pytest.raises(HandlerError) as raised:
        await http_get(context(services, msg, seconds=5), msg)
    assert str(raised.value).startswith("get failed: ")
    assert str(raised.value).endswith(f", url: {url}")


async def test_a_server_that_never_answers_is_a_handler_error_within_the_method_time(
    tmp_path: Path,
) -> None:
    services = FakeServices(tmp_path)
    # Accepts connections (the kernel's backlog) but never reads or answers.
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/silent"
    msg = request("REQHttpGet", url)
    with trio.fail_after(5), pytest.raises(HandlerError) as raised:
        await http_get(context(services, msg, seconds=0.3), msg)
    await listener.aclose()
    assert str(raised.value) == f"get failed: ReadTimeout, url: {url}"


async def test_a_body_over_the_limit_is_a_handler_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("steward_otp.handlers.http.BODY_LIMIT", 10)
    services = FakeServices(tmp_path)
    async with local_http_server(ROUTES) as server:
        msg = request("REQHttpGet", server.url("/hello"))
        with pytest.raises(HandlerError) as raised:
            await http_get(context(services, msg, seconds=5), msg)
    assert str(raised.value) == (f"body larger than 10 bytes, bailing out: {server.url('/hello')}")


LONG_LABEL = "a" * 64


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://a..b/", "it has an empty label (two dots in a row, or a leading dot)"),
        ("http://.a/", "it has an empty label (two dots in a row, or a leading dot)"),
        (
            f"http://{LONG_LABEL}.example/",
            f"the label {LONG_LABEL!r} is 64 characters long, more than 63",
        ),
        (f"http://{'a.' * 127}example/", "the name is 261 characters long, more than 253"),
        ("http://xn--a.invalid/", "Codepoint U+0080 at position 1 of '\\x80' not allowed"),
        ("http://xn--zz.example/", "Invalid A-label"),
        ("http:///no-host", "the host is empty"),
    ],
)
async def test_a_host_that_is_no_valid_name_is_a_handler_error(
    tmp_path: Path, url: str, problem: str
) -> None:
    """Refused before any request, so nothing is looked up or sent."""
    services = FakeServices(tmp_path)
    msg = request("REQHttpGet", url)
    outcome: BaseException | bytes | None
    try:
        outcome = await http_get(context(services, msg, seconds=5), msg)
    except (HandlerError, ValueError) as exc:  # ValueError: what escaped before the fix
        outcome = exc
    assert isinstance(outcome, HandlerError), f"not a HandlerError: {outcome!r}"
    assert str(outcome) == (
        f'field "methodArgs[0]": value {url!r} has no valid host: {problem}; '
        'allowed: an http or https URL, e.g. ["http://127.0.0.1:9100/metrics"]'
    )


@pytest.mark.parametrize("target", ["http://a..b/", "http://xn--a.invalid/"])
async def test_a_redirect_to_a_host_that_is_no_valid_name_is_a_handler_error(
    tmp_path: Path, target: str
) -> None:
    """The bad name fails while it is encoded, before any lookup: only 127.0.0.1 is asked."""
    services = FakeServices(tmp_path)

    async def redirect(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := await stream.receive_some(4096)):
                head += chunk
            await stream.send_all(
                f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )

    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    url = f"http://127.0.0.1:{listener.socket.getsockname()[1]}/moved"
    msg = request("REQHttpGet", url)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, redirect, [listener])
        with trio.fail_after(5), pytest.raises(HandlerError) as raised:
            await http_get(context(services, msg, seconds=5), msg)
        nursery.cancel_scope.cancel()
    assert str(raised.value).startswith("get failed: ")
    assert str(raised.value).endswith(f", url: {url}")


# ----------------------------------------------------------------- two nodes, end to end


async def test_http_body_comes_back_to_the_requesting_node(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("http", "body.txt")
    async with local_http_server(ROUTES) as server, central, ship1:
        await central.submit(
            [message("REQHttpGet", [server.url("/hello")], directory="http", file_name="body.txt")]
        )
        await wait_for_exact(out, "hello from the test server\n")
        assert server.count("/hello") == 1
    assert not out.with_name("body.txt.error").exists()


async def test_a_url_that_is_not_http_is_an_error_reply_and_gets_still_work(
    net: LoopbackNet, pair: tuple[Node, Node]
) -> None:
    central, ship1 = pair
    out = net.result("out", "out.txt")
    async with local_http_server(ROUTES) as server, central, ship1:
        await central.submit([message("REQHttpGet", ["ftp://127.0.0.1/file"])])
        error = await wait_for_text(out.with_name("out.txt.error"), "is not http or https")
        assert error.startswith('error: REQHttpGet: field "methodArgs[0]": value \'ftp://')
        await central.submit([message("REQHttpGet", ["http://a..b/"])])
        await wait_for_text(out.with_name("out.txt.error"), "value 'http://a..b/' has no valid")
        await central.submit([message("REQHttpGet", [server.url("/broken")])])
        await wait_for_text(out.with_name("out.txt.error"), "not 200, were 500")

        await central.submit([message("REQHttpGet", [server.url("/hello")])])
        await wait_for_exact(out, "hello from the test server\n")
        assert subscriber_restarts(ship1, "REQHttpGet") == 0
    assert "oops" not in file_text(out)
