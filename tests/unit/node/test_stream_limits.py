"""Limits of the stream inputs (socket, TCP): timeouts, connection cap, bounded answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from steward_otp.inputs.answers import MAX_REJECTED_ANSWERS, bounded_reports
from steward_otp.inputs.connections import ConnectionGate, Limits
from steward_otp.inputs.document_stream import answer_client
from steward_otp.inputs.http import HttpInputApp
from steward_otp.inputs.intake import Answer
from steward_otp.message import MessageError

Accept = Callable[[bytes], Awaitable[list[Answer]]]


def _accepted(index: int) -> Answer:
    return Answer(index=index, accepted=True, id=f"id{index}", to_node="a", method="REQPing")


def _rejected(index: int) -> Answer:
    error = MessageError(index, "toNode", '"a b"', "is not a valid node name", "a name")
    return Answer(index=index, accepted=False, error=error)


async def _nothing(document: bytes) -> list[Answer]:
    return []


async def _one(document: bytes) -> list[Answer]:
    return [_accepted(0)]


async def _receive_lines(stream: trio.abc.ReceiveStream) -> list[dict[str, Any]]:
    chunks = []
    while chunk := await stream.receive_some(65536):
        chunks.append(chunk)
    return [json.loads(line) for line in b"".join(chunks).decode().splitlines()]


async def _exchange(
    accept: Accept, document: bytes, gate: ConnectionGate | None = None
) -> list[dict[str, Any]]:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_client, server, accept, 1 << 20, "test", gate)
        await client.send_all(document)
        await client.send_eof()
        return await _receive_lines(client)


async def test_an_empty_document_gets_an_answer() -> None:
    [line] = await _exchange(_nothing, b"")
    assert line["status"] == "rejected" and "holds no messages" in line["error"]


async def test_answers_list_every_accepted_message_and_summarise_many_rejected() -> None:
    async def mixed(document: bytes) -> list[Answer]:
        return [_accepted(0), *(_rejected(i) for i in range(1, 301)), _accepted(301)]

    lines = await _exchange(mixed, b"[]")
    assert [line["index"] for line in lines if line["status"] == "accepted"] == [0, 301]
    rejected = [line for line in lines if line["status"] == "rejected"]
    assert len(rejected) == MAX_REJECTED_ANSWERS + 1
    summary = rejected[-1]
    assert summary["index"] is None
    assert "200 more rejected messages are not listed (300 rejected in all" in summary["error"]


def test_error_log_lines_of_one_document_are_bounded() -> None:
    texts = [f"error: tcp: message rejected: {i}" for i in range(3000)]
    reported = bounded_reports(texts, "tcp")
    assert len(reported) == 11
    assert (
        reported[-1] == "error: tcp: 2990 more rejected messages in the same document not reported"
    )


async def test_a_client_that_stops_sending_gets_an_answer_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = ConnectionGate(Limits(idle_timeout=10, read_timeout=60))
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_client, server, _one, 1 << 20, "test", gate)
        await client.send_all(b'[{"toNode": ')
        started = trio.current_time()
        [line] = await _receive_lines(client)
    assert trio.current_time() - started == 10
    assert "nothing received for 10 s; nothing was accepted" in line["error"]
    assert gate.active == 0


async def test_a_trickling_client_is_cut_off_at_the_read_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = ConnectionGate(Limits(idle_timeout=10, read_timeout=60))
    client, server = trio.testing.memory_stream_pair()
    answers: list[dict[str, Any]] = []

    async def trickle() -> None:
        for _ in range(100):
            await trio.sleep(5)
            try:
                await client.send_all(b" ")
            except trio.BrokenResourceError:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_client, server, _one, 1 << 20, "test", gate)
        nursery.start_soon(trickle)
        answers = await _receive_lines(client)
        nursery.cancel_scope.cancel()
    [line] = answers
    assert "not complete after 60 s" in line["error"]


async def test_a_full_input_drops_the_idlest_client_to_serve_a_new_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = ConnectionGate(Limits(max_connections=2, idle_timeout=30, evict_idle_after=1))
    idle = [trio.testing.memory_stream_pair() for _ in range(2)]
    async with trio.open_nursery() as nursery:
        for _, server in idle:
            nursery.start_soon(answer_client, server, _one, 1 << 20, "test", gate)
            await trio.sleep(2)
        assert gate.active == 2
        [line] = await _exchange(_one, b"{}", gate)
        assert line["status"] == "accepted"
        [dropped] = await _receive_lines(idle[0][0])
        assert "connection dropped: the input was full (2 clients)" in dropped["error"]
        assert gate.evicted == 1 and gate.active == 1
        nursery.cancel_scope.cancel()


async def test_a_full_input_of_busy_clients_refuses_the_new_one_with_a_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gate = ConnectionGate(Limits(max_connections=2, idle_timeout=30, evict_idle_after=5))
    busy = [trio.testing.memory_stream_pair() for _ in range(2)]
    async with trio.open_nursery() as nursery:
        for client, server in busy:
            nursery.start_soon(answer_client, server, _one, 1 << 20, "test", gate)
            await client.send_all(b"[")
        await trio.sleep(1)
        [line] = await _exchange(_one, b"{}", gate)
        assert "connection refused: 2 clients are being served" in line["error"]
        assert gate.refused == 1 and gate.active == 2
        for client, _ in busy:  # the held clients are still served
            await client.send_all(b"]")
            await client.send_eof()
            [answer] = await _receive_lines(client)
            assert answer["status"] == "accepted"
    assert gate.active == 0


async def test_an_accept_that_fails_answers_the_client_and_the_next_one_is_served() -> None:
    async def broken(document: bytes) -> list[Answer]:
        raise RuntimeError("bug")

    [line] = await _exchange(broken, b"{}", ConnectionGate())
    assert "internal error: RuntimeError" in line["error"]
    [line] = await _exchange(_one, b"{}", ConnectionGate())
    assert line["status"] == "accepted"


async def test_the_http_input_bounds_its_errors_and_answers_an_empty_document() -> None:
    async def many(document: bytes) -> list[Answer]:
        if not document:
            return []
        return [_accepted(0), *(_rejected(i) for i in range(1, 501))]

    app = HttpInputApp(many, lambda level, text: None, 1 << 20)

    async def post(body: bytes) -> tuple[int, dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(event: dict[str, Any]) -> None:
            sent.append(dict(event))

        scope = {"type": "http", "method": "POST", "headers": []}
        await app(scope, receive, send)  # type: ignore[arg-type]
        return sent[0]["status"], json.loads(sent[1]["body"])

    status, body = await post(b"[...]")
    assert status == 400 and len(body["accepted"]) == 1
    assert len(body["errors"]) == MAX_REJECTED_ANSWERS + 1
    assert "400 more rejected messages are not listed" in body["errors"][-1]["error"]
    status, body = await post(b"")
    assert status == 400 and "holds no messages" in body["errors"][0]["error"]
