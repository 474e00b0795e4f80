"""Fuzzing the doors of a running node: message socket, TCP, HTTP and the control socket.

One real node runs in a background thread (its own Trio loop, an in-memory broker) with
every input open. Hypothesis throws bytes at it over real sockets: random bytes, JSON and
YAML shaped like messages with wrong types and unknown keys, control requests with random
operations and arguments. For every example the client must get a well-formed answer
(JSON lines, or an HTTP status with a JSON body) and afterwards the node must still be
whole: no process restarted, and a good message is still accepted.

Bounded for CI (``FUZZ_EXAMPLES``, default 25 per door; raise it for a longer hunt); a
failure prints the example, which then belongs in ``@example`` below as a regression test.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from steward_otp.loopback import LoopbackBroker, LoopbackTransport
from steward_otp.message import FIELD_NAMES
from steward_otp.node import Node
from steward_otp.supervisors import ProcessSnapshot
from tests.conftest import free_loopback_port
from tests.nodes import node_config

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
ANSWER_TIMEOUT = 20.0
GOOD = b'[{"toNode": "ship1", "method": "REQPing", "ACKTimeout": 0}]'

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class LiveNode:
    """A node running in a thread of its own; the test talks to it over its sockets."""

    def __init__(self, base: Path) -> None:
        self.tcp = f"127.0.0.1:{free_loopback_port()}"
        self.http = f"127.0.0.1:{free_loopback_port()}"
        config = node_config(
            base,
            "central",
            "nats://127.0.0.1:1",
            enable_socket=True,
            enable_read_folder=False,
            tcp_listener=self.tcp,
            http_listener=self.http,
        )
        self.node = Node(config, transport=LoopbackTransport(LoopbackBroker(), name="central"))
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="live-node", daemon=True)

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported by stop()
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with self.node:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(30), "the node did not start"
        assert self._failure is None, self._failure

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)
        assert self._failure is None, self._failure

    def snapshot(self) -> ProcessSnapshot:
        assert self._token is not None
        return trio.from_thread.run_sync(self.node.snapshot, trio_token=self._token)


def restarts(snapshot: ProcessSnapshot) -> dict[str, int]:
    """Every process with its restart count (supervisors and workers)."""
    counts = {snapshot.path: snapshot.restart_count}
    for child in snapshot.children:
        counts.update(restarts(child))
    return counts


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    node = LiveNode(tmp_path_factory.mktemp("fuzz"))
    node.start()
    before = restarts(node.snapshot())
    yield node
    after = restarts(node.snapshot())
    node.stop()
    restarted = {p: n for p, n in after.items() if n > before.get(p, 0)}
    assert restarted == {}, "processes restarted while the node was fuzzed"


# -- talking to the node --------------------------------------------------------------------


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(ANSWER_TIMEOUT)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def stream_document(address: str | Path, document: bytes) -> list[dict[str, Any]]:
    """Send one document to a stream input (unix path or HOST:PORT); the answer lines."""
    if isinstance(address, Path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = str(address)
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    with sock:
        sock.settimeout(ANSWER_TIMEOUT)
        sock.connect(target)
        # The node may answer early (too large) and close; its answer is still there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(document)
            sock.shutdown(socket.SHUT_WR)
        answer = _read_all(sock)
    lines = [line for line in answer.split(b"\n") if line]  # not splitlines(): U+0085
    assert lines, "no answer"
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) and p.get("status") in ("accepted", "rejected") for p in parsed)
    return parsed


def control(path: Path, line: bytes) -> dict[str, Any]:
    """Send one request line to the control socket; its first answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ANSWER_TIMEOUT)
        sock.connect(str(path))
        # The node may answer early (too large) and close; its answer is still there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(line + b"\n")
        buffer = b""
        while b"\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, "the control socket closed without an answer"
            buffer += chunk
    answer = json.loads(buffer.split(b"\n", 1)[0])
    assert isinstance(answer, dict)
    return answer


def assert_still_whole(live: LiveNode) -> None:
    """A good message is still accepted through the socket input."""
    (answer,) = stream_document(live.node.config.socket_path, GOOD)
    assert answer["status"] == "accepted", answer


# -- what to throw ----------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
field_names = st.sampled_from(sorted(FIELD_NAMES)) | st.text(max_size=12)
message_like = st.dictionaries(field_names, json_values, max_size=8).map(
    lambda d: {"toNode": "ship1", "method": "REQPing", **d}
)
documents = st.one_of(
    st.binary(max_size=2048),
    st.lists(message_like, max_size=5).map(lambda ms: json.dumps(ms).encode()),
    message_like.map(lambda m: json.dumps(m).encode()),
    st.text(max_size=300).map(lambda t: ("- toNode: ship1\n  method: " + t).encode()),
)
control_ops = st.sampled_from(
    [
        *("tree", "status", "queue.ls", "queue.cancel", "queue.retry", "queue.purge"),
        *("methods", "audit", "audit.end", "replies", "nope", ""),
    ]
)
control_requests = st.one_of(
    st.binary(max_size=512).map(lambda b: b.replace(b"\n", b" ")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda op, extra: json.dumps({"op": op, **extra}).encode(),
        control_ops,
        st.dictionaries(
            st.sampled_from(["to_node", "ids", "states", "limit", "after", "since", "older"])
            | st.text(max_size=6),
            json_values,
            max_size=4,
        ),
    ),
)

DEEP_JSON = b"[" * 5_000  # deeper than the interpreter's recursion limit
DEEP_OBJECT = b'{"a":' * 5_000
ALIASES = b"a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\ne: [*d, *d]\n"


# -- the doors ------------------------------------------------------------------------------


@FUZZ
@given(document=documents)
@example(document=DEEP_JSON)
@example(document=DEEP_OBJECT)
@example(document=ALIASES)
@example(document=b"\x00\xff" * 100)
@example(document=b"")
def test_the_message_socket_answers_everything(live: LiveNode, document: bytes) -> None:
    stream_document(live.node.config.socket_path, document)
    assert_still_whole(live)


@FUZZ
@given(document=documents)
@example(document=DEEP_JSON)
def test_the_tcp_input_answers_everything(live: LiveNode, document: bytes) -> None:
    stream_document(live.tcp, document)
    assert_still_whole(live)


@FUZZ
@given(document=documents, content_type=st.sampled_from(["application/json", "text/yaml", "x"]))
@example(document=DEEP_OBJECT, content_type="application/json")
def test_the_http_input_answers_everything(
    live: LiveNode, document: bytes, content_type: str
) -> None:
    response = httpx.post(
        f"http://{live.http}/",
        content=document,
        headers={"Content-Type": content_type},
        timeout=ANSWER_TIMEOUT,
    )
    assert response.status_code in (202, 400, 413), response.text
    body = response.json()
    assert isinstance(body, dict) and set(body) <= {"accepted", "errors"}
    assert_still_whole(live)


@FUZZ
@given(line=control_requests)
@example(line=DEEP_JSON)
@example(line=DEEP_OBJECT)
@example(line=b'{"op": "queue.ls", "limit": 1e400}')
@example(line=b'{"op": "queue.purge", "to_node": "*", "older": -1}')
def test_the_control_socket_answers_everything(live: LiveNode, line: bytes) -> None:
    assume(line.strip())  # a blank line is no request: the server waits for the next
    answer = control(live.node.config.control_socket_path, line)
    assert isinstance(answer.get("ok", answer.get("event")), (bool, str)), answer
    if answer.get("ok") is False:
        assert isinstance(answer.get("error"), str) and answer["error"]
    assert control(live.node.config.control_socket_path, b'{"op": "status"}')["ok"] is True
