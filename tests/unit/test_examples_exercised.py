"""Every example message in examples/messages/ is exercised, and this file says how.

Each example is listed in ``EXAMPLES`` with where it goes after fan-out and what the tests do
with it:

* **run** — handed to a real node's input (``accept_document``, the path the unix socket
  uses) in a two-node setup (``central`` + ``ship1``, real nats-server) and its effect is
  checked. Only examples that are harmless on a test machine run; one that fetches from
  the internet runs with its URL pointed at a server the test starts on 127.0.0.1.
* **route** — would touch the host (systemctl, wireguard, k3s, /usr/local/steward) or the
  internet, or belongs to a method with its own tests (file copy): it is validated and
  routed (subject per destination) and, except for the copy, accepted by a node's input,
  where it waits in the outbox for nodes that never come.

Nothing here reaches any address but 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
import trio

from steward_otp.message import fan_out, parse_messages, subject_for
from steward_otp.node import Node
from tests.conftest import NatsServer
from tests.integration.local_http import local_http_server
from tests.nodes import file_text, node_config, wait_for

EXAMPLES_DIR = Path(__file__).parents[2] / "examples" / "messages"

RUN, ROUTE = "run", "route"


@attrs.frozen
class Example:
    """What one example file is, where it goes, and how the tests exercise it."""

    how: str
    subjects: tuple[str, ...]
    what: str


EXAMPLES: dict[str, Example] = {
    "cli-command-cont-tail-log-file.json": Example(
        RUN,
        ("ship1.REQCliCommandCont.EventACK",),
        "REQCliCommandCont streams lines as they appear: the hostname line comes back while "
        "journalctl still follows (its legacy relay fields are ignored).",
    ),
    "cli-command-ship1.yaml": Example(
        RUN,
        ("ship1.REQCliCommand.EventACK",),
        "REQCliCommand from YAML: `hostname && uptime` output lands in cli/ship1/hostname.result.",
    ),
    "clicommand-to-console.json": Example(
        ROUTE,
        ("ship1.REQCliCommand.EventACK",),
        "curls the internet: validated and routed only.",
    ),
    "copy-files.json": Example(
        ROUTE,
        ("central.REQCopySrc.EventACK",),
        "REQCopySrc of a file that is not here; file copy has its own tests.",
    ),
    "create-and-execute-bash-script-with-heredoc.yaml": Example(
        RUN,
        ("ship1.REQCliCommand.EventACK", "ship2.REQCliCommand.EventACK"),
        "a YAML block scalar carries a heredoc script; ship1 writes and runs it in its home "
        "(WHOOPS.txt appears); the copy for ship2 waits in central's outbox.",
    ),
    "create-msg-startup-folder.json": Example(
        ROUTE,
        ("ship1.REQCliCommand.EventACK", "ship2.REQCliCommand.EventACK"),
        "writes to /usr/local/steward and restarts a service: validated and routed only.",
    ),
    "flush-dns-restart-wireguard.json": Example(
        ROUTE,
        ("ship1.REQCliCommand.EventACK", "ship2.REQCliCommand.EventACK"),
        "restarts DNS and wireguard: validated and routed only.",
    ),
    "hello-central.json": Example(
        RUN,
        ("central.REQHello.EventNACK",),
        "ship1 says hello to central: hello-messages/ship1/hello.log on central.",
    ),
    "http-get-scheduled.json": Example(
        RUN,
        ("ship1.REQHttpGet.EventACK",),
        "REQHttpGet with schedule [2, 5]: three GETs (at 0, 2, 4 s), each body printed on "
        "central's console; the URL (vg.no) is replaced by a local test server.",
    ),
    "k3s-delete-deployment.yaml": Example(
        ROUTE, ("vbox1.REQCliCommand.EventACK",), "runs kubectl: validated and routed only."
    ),
    "k3s-deploy.yaml": Example(
        ROUTE, ("vbox1.REQCliCommand.EventACK",), "runs kubectl: validated and routed only."
    ),
    "k3s-install.yaml": Example(
        ROUTE,
        ("vbox1.REQCliCommandCont.EventACK",),
        "pipes an internet script to sh: validated and routed only.",
    ),
    "k3s-uninstall.yaml": Example(
        ROUTE,
        ("vbox1.REQCliCommandCont.EventACK",),
        "uninstalls k3s: validated and routed only.",
    ),
    "operation-start-proc.json": Example(
        RUN,
        ("central.REQOpProcessStart.EventACK",),
        "REQOpProcessStart of REQHttpGet on central, where it runs already: the error reply "
        "says so (stop/startHttp.log.error).",
    ),
    "operation-stop-proc.json": Example(
        RUN,
        ("ship1.REQOpProcessStop.EventACK",),
        "toNode ship1 wins over toNodes; ship1 has no subscriber on central's subject "
        "central.REQHttpGet, so the error reply names it (stop/stopHttp.log.error).",
    ),
    "ping-ship1.json": Example(
        RUN,
        ("ship1.REQPing.EventACK",),
        "the classic ping/pong: ship1 records the ping, central the pong.",
    ),
    "ping.json": Example(
        RUN,
        ("ship1.REQPing.EventACK",),
        "a ping with the legacy data list and the default reply: ship1 records it, central "
        "gets the (empty) reply file.",
    ),
    "say-hello.json": Example(
        RUN,
        ("central.REQHello.EventNACK",),
        "a hello without directory and fileName: central refuses to write it and logs an "
        "error naming fileName.",
    ),
    "use-sed-to-edit-files.json": Example(
        ROUTE,
        ("ship1.REQCliCommand.EventACK", "ship2.REQCliCommand.EventACK"),
        "edits /usr/local/steward and restarts a service: validated and routed only.",
    ),
}


def example(name: str) -> bytes:
    """The bytes of example file ``name``."""
    return (EXAMPLES_DIR / name).read_bytes()


example_files = sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.is_file())


def test_every_example_file_is_listed_with_how_it_is_exercised() -> None:
    assert sorted(EXAMPLES) == example_files


@pytest.mark.parametrize("name", example_files)
def test_example_validates_and_routes_to_its_destinations(name: str) -> None:
    result = parse_messages(example(name))
    assert result.errors == [], [str(e) for e in result.errors]
    routed = [m for parsed in result.messages for m in fan_out(parsed, "central")]
    assert tuple(subject_for(m) for m in routed) == EXAMPLES[name].subjects


# ------------------------------------------------------------------------------ with nodes

Nodes = tuple[Node, Node]
Check = Callable[[Path, Nodes, pytest.CaptureFixture[str]], Awaitable[None]]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


async def hand_to(node: Node, document: bytes) -> None:
    """Give ``document`` to ``node``'s input; every message in it must be accepted."""
    answers = await node.accept_document(document)
    assert answers and all(a.accepted for a in answers), [a.to_dict() for a in answers]


@check("cli-command-cont-tail-log-file.json")
async def _cli_cont(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    await hand_to(central, example("cli-command-cont-tail-log-file.json"))
    out = base / "central" / "data" / "system" / "ship1" / "test"
    await wait_for(lambda: file_text(out).startswith(Path("/etc/hostname").read_text()))


@check("cli-command-ship1.yaml")
async def _cli(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    await hand_to(central, example("cli-command-ship1.yaml"))
    out = base / "central" / "data" / "cli" / "ship1" / "hostname.result"
    await wait_for(lambda: "load average" in file_text(out))
    assert file_text(out).splitlines()[0] == socket.gethostname()


@check("create-and-execute-bash-script-with-heredoc.yaml")
async def _heredoc(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    await hand_to(central, example("create-and-execute-bash-script-with-heredoc.yaml"))
    await wait_for(lambda: file_text(base / "ship1" / "WHOOPS.txt") == "sorry...\n")
    assert (base / "ship1" / "test.sh").read_text().startswith("#!/bin/bash\n")
    await wait_for((base / "central" / "data" / "system" / "ship1" / "system.log").exists)
    assert (await central.store.queue_depths()).get("ship2") == 1


@check("hello-central.json")
async def _hello(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    _central, ship1 = nodes
    await hand_to(ship1, example("hello-central.json"))
    hello = base / "central" / "data" / "hello-messages" / "ship1" / "hello.log"
    await wait_for(lambda: 'Received hello from "ship1"' in file_text(hello))


@check("http-get-scheduled.json")
async def _http_scheduled(base: Path, nodes: Nodes, capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    [message] = json.loads(example("http-get-scheduled.json"))
    assert message["methodArgs"][0] == "https://vg.no"
    body = b"<html>the front page</html>"
    async with local_http_server({"/": (200, body)}) as server:
        message["methodArgs"][0] = server.url("/")
        await hand_to(central, json.dumps([message]).encode())
        printed: list[str] = []

        def console() -> str:
            printed.append(capsys.readouterr().out)
            return "".join(printed)

        await wait_for(lambda: console().count(body.decode()) == 3, timeout=30)
        assert server.count("/") == 3


@check("operation-start-proc.json")
async def _op_start(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    await hand_to(central, example("operation-start-proc.json"))
    error = base / "central" / "data" / "stop" / "central" / "startHttp.log.error"
    await wait_for(
        lambda: "a subscriber for REQHttpGet runs already on central" in file_text(error)
    )


@check("operation-stop-proc.json")
async def _op_stop(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    await hand_to(central, example("operation-stop-proc.json"))
    error = base / "central" / "data" / "stop" / "ship1" / "stopHttp.log.error"
    await wait_for(
        lambda: (
            "did not find process to stop: central.REQHttpGet.EventACK on ship1" in file_text(error)
        )
    )


@check("ping-ship1.json")
async def _ping_pong(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    await hand_to(central, example("ping-ship1.json"))
    ping = base / "ship1" / "data" / "ping" / "ship1" / "ping.log"
    pong = base / "central" / "data" / "ping" / "ship1" / "ping.log"
    await wait_for(lambda: "ping received from central" in file_text(ping))
    await wait_for(lambda: "pong received from ship1" in file_text(pong))


@check("ping.json")
async def _ping(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    central, _ship1 = nodes
    await hand_to(central, example("ping.json"))
    ping = base / "ship1" / "data" / "ping" / "ship1" / "somefile.ping.log"
    await wait_for(lambda: "ping received from central" in file_text(ping))
    await wait_for((base / "central" / "data" / "ping" / "ship1" / "somefile.ping.log").exists)


@check("say-hello.json")
async def _say_hello(base: Path, nodes: Nodes, _capsys: pytest.CaptureFixture[str]) -> None:
    _central, ship1 = nodes
    await hand_to(ship1, example("say-hello.json"))
    error_log = base / "central" / "data" / "errorLog" / "errorCentral" / "error.log"
    await wait_for(
        lambda: (
            "REQHello" in file_text(error_log)
            and "field \"fileName\": value ''" in file_text(error_log)
        )
    )


RUNNABLE = sorted(name for name, example in EXAMPLES.items() if example.how == RUN)


def test_every_runnable_example_has_a_check() -> None:
    assert sorted(CHECKS) == RUNNABLE


@pytest.mark.integration
@pytest.mark.parametrize("name", RUNNABLE)
async def test_runnable_example_does_what_it_says_between_two_nodes(
    name: str, nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    ship1 = Node(node_config(tmp_path, "ship1", nats_server.url))
    async with central, ship1:
        await CHECKS[name](tmp_path, (central, ship1), capsys)


@pytest.mark.integration
async def test_examples_that_only_route_are_accepted_and_wait_for_their_nodes(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    central = Node(node_config(tmp_path, "central", nats_server.url))
    waiting = [n for n, e in EXAMPLES.items() if e.how == ROUTE and n != "copy-files.json"]
    async with central:
        for name in waiting:
            await hand_to(central, example(name))
        expected: dict[str, int] = {}
        for name in waiting:
            for subject in EXAMPLES[name].subjects:
                node = subject.split(".")[0]
                expected[node] = expected.get(node, 0) + 1
        with trio.fail_after(10):
            while await central.store.queue_depths() != expected:
                await trio.sleep(0.05)
