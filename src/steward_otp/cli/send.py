"""``steward-otp send`` and ``steward-otp cmd``: hand messages to a running node and, on
request, wait for the replies and print each node's output as it arrives.

Both talk to the node at ``--home``:

1. ``methods`` on the control socket: the node's method table (built-in methods and those
   its embedding code added), which the messages are validated against. A message that is
   wrong there is refused before anything is sent: nothing of the document goes out.
2. ``audit.end``: where the node's audit log ends now (only when waiting).
3. The document goes to the node's input socket (``steward.sock``); each message is answered
   (``steward_otp.inputs.intake.Answer``: accepted with its id, or rejected with the field,
   value and what is allowed; both with the message's warnings).
4. ``replies`` on the control socket (only when waiting): the replies to the accepted ids as
   the node receives them, then the final state of each (see :mod:`steward_otp.replies.follow`).

Exit status: 0 when every message was accepted and (waiting) every node replied without
error; 1 when a message was rejected, a reply is an error or a delivery failed; 2 for a
usage error; 3 when some node did not reply within the timeout, or no node answers at
``--home``.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn

import typer

from steward_otp.cli.common import home_option
from steward_otp.replies.send_plan import (
    CMD_DEFAULTS,
    FAILED,
    MAX_WAIT,
    NO_ANSWER,
    OK,
    command_message,
    local_rejections,
    summarise,
)

if TYPE_CHECKING:
    from steward_otp.methods import MethodTable

PROG: Final = "steward-otp"
USAGE: Final = 2

WAIT_DEFAULT: Final = 60.0
"""Seconds ``send --wait`` waits for replies when no number is given."""

EXIT_CODES_HELP: Final = (
    "Exit status: 0 every message accepted and (when waiting) every node replied without "
    "error; 1 a message was rejected, a reply is an error or a delivery failed; 2 usage "
    "error; 3 some node did not reply within the timeout (it stays queued and runs when the "
    "node is back), or no node answers at --home."
)

Home = Annotated[
    Path,
    home_option("Home folder of the node that sends (the local node)."),
]
AsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="One JSON object per line: the answers, then (when waiting) each reply and a summary.",
    ),
]


class NoNode(Exception):
    """No node answers at the home folder."""


def _fail(message: str, status: int = USAGE) -> NoReturn:
    typer.echo(f"{PROG}: error: {message}", err=True)
    raise typer.Exit(status)


# ---------------------------------------------------------------------------------------------
# Talking to the node


def _paths(home: Path) -> tuple[Path, Path]:
    from steward_otp.cli.inspection import socket_folder  # noqa: PLC0415

    folder = socket_folder(home)
    return folder / "control.sock", folder / "steward.sock"


async def _control(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    from steward_otp.control.client import control_request  # noqa: PLC0415

    try:
        response = await control_request(path, request)
    except (OSError, ConnectionError) as exc:
        raise NoNode(f"no node answers on {path} ({exc}); is it running?") from exc
    if not response.get("ok"):
        raise NoNode(f"the node refused {request['op']}: {response.get('error')}")
    return response


def method_table(methods: Sequence[dict[str, Any]]) -> MethodTable:
    """A method table from the ``methods`` control answer."""
    from steward_otp.methods import MethodSpec, MethodTable  # noqa: PLC0415

    return MethodTable(
        MethodSpec(
            name=m["name"],
            kind=m["kind"],
            reply_capable=bool(m.get("replyCapable")),
            description=str(m.get("description") or ""),
            args=str(m.get("args") or ""),
            routable=bool(m.get("routable", True)),
            quick=bool(m.get("quick")),
        )
        for m in methods
    )


class Printer:
    """Prints answers, replies and the summary: text for people, or JSON lines."""

    def __init__(self, *, as_json: bool, answers_as_json: bool) -> None:
        self.as_json = as_json
        self.answers_as_json = answers_as_json or as_json
        self.started = time.monotonic()

    def _line(self, data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def answer(self, answer: dict[str, Any]) -> None:
        """One input answer (accepted or rejected, with warnings)."""
        if self.answers_as_json:
            self._line(answer)
            return
        for warning in answer.get("warnings") or []:
            typer.echo(f"{PROG}: warning: {warning}", err=True)
        if answer.get("status") != "accepted":
            typer.echo(f"{PROG}: rejected: {answer.get('error')}", err=True)

    def reply(self, event: dict[str, Any]) -> None:
        """One reply, as it arrives."""
        if self.as_json:
            self._line(event)
            return
        took = time.monotonic() - self.started
        label = "error" if event.get("error") else "ok"
        lines = [f"{event['node']} ({label}, {took:.1f}s):"]
        output = str(event.get("output") or "").rstrip("\n")
        lines += ["    " + line for line in output.split("\n")] if output else ["    (no output)"]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    def state(self, event: dict[str, Any]) -> None:
        """A delivery outcome: only failures are news to a person."""
        if self.as_json:
            self._line(event)
        elif event.get("state") in ("failed", "cancelled", "purged"):
            why = f": {event['reason']}" if event.get("reason") else ""
            typer.echo(f"{event['node']}: delivery {event['state']}{why}", err=True)

    def summary(self, summary: dict[str, Any]) -> None:
        """The last line: who replied, who did not and why."""
        if self.as_json:
            self._line(summary)
        else:
            typer.echo(summary["text"])


async def deliver(
    home: Path,
    document: bytes,
    *,
    wait: float | None,
    printer: Printer,
) -> int:
    """Validate, send and (with ``wait`` seconds) follow the replies; the exit status."""
    from steward_otp.control.client import control_stream  # noqa: PLC0415
    from steward_otp.inputs.unix_server import send_document  # noqa: PLC0415
    from steward_otp.message import parse_messages  # noqa: PLC0415
    from steward_otp.methods import NO_REPLY  # noqa: PLC0415

    control, socket = _paths(home)
    table = method_table((await _control(control, {"op": "methods"}))["methods"])
    local = parse_messages(document, table=table)
    if local.errors:
        for answer in local_rejections(local):
            printer.answer(answer)
        return FAILED
    after = (await _control(control, {"op": "audit.end"}))["seq"] if wait is not None else None
    try:
        answers = await send_document(socket, document)
    except OSError as exc:
        raise NoNode(f"no node answers on {socket} ({exc}); is it running?") from exc
    for answer in answers:
        printer.answer(answer)
    rejected = any(a.get("status") != "accepted" for a in answers)
    if wait is None:
        return FAILED if rejected else OK
    by_index = dict(zip(local.indexes, local.messages, strict=True))
    reply_ids: list[str] = []
    delivery_ids: list[str] = []
    for answer in answers:
        if answer.get("status") != "accepted":
            continue
        message = by_index.get(answer.get("index"))  # type: ignore[arg-type]
        wants_reply = message is None or (message.reply_method != NO_REPLY and not message.is_reply)
        (reply_ids if wants_reply else delivery_ids).append(str(answer["id"]))
    if not reply_ids and not delivery_ids:
        return FAILED
    request = {
        "op": "replies",
        "ids": reply_ids,
        "deliveryIds": delivery_ids,
        "afterSeq": after,
        "timeout": wait,
    }
    end: dict[str, Any] | None = None
    try:
        async for line in control_stream(control, request):
            if not line.get("ok"):
                raise NoNode(f"the node refused replies: {line.get('error')}")
            kind = line.get("event")
            event = {k: v for k, v in line.items() if k != "ok"}
            if kind == "reply":
                printer.reply(event)
            elif kind == "state":
                printer.state(event)
            elif kind == "end":
                end = event
    except (OSError, ConnectionError) as exc:
        raise NoNode(f"lost the node at {control} ({exc})") from exc
    if end is None:
        raise NoNode(f"the node at {control} stopped before the replies ended")
    text, status = summarise(end["messages"], bool(end.get("timedOut")))
    if rejected:
        status = FAILED
    printer.summary(
        {
            "event": "summary",
            "text": text,
            "timedOut": bool(end.get("timedOut")),
            "messages": end["messages"],
            "exitCode": status,
        }
    )
    return status


def run_delivery(home: Path, document: bytes, *, wait: float | None, printer: Printer) -> None:
    """Run :func:`deliver` and exit with its status (3 when no node answers)."""
    import trio  # noqa: PLC0415

    try:
        status = trio.run(lambda: deliver(home, document, wait=wait, printer=printer))
    except NoNode as exc:
        _fail(str(exc), NO_ANSWER)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(status)


# ---------------------------------------------------------------------------------------------
# Commands


def _wait_seconds(seconds: float) -> float:
    """``--timeout`` checked against what the node's ``replies`` operation allows, before
    anything is sent (usage error otherwise)."""
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_WAIT):
        _fail(f"--timeout: value {seconds:.15g}; allowed: seconds from 0 to {MAX_WAIT}")
    return seconds


def _check_output(directory: str, file_name: str) -> None:
    """``--directory`` and ``--file-name`` checked as the nodes' file writer checks them,
    before anything is sent (usage error otherwise)."""
    from steward_otp.handlers.paths import UnsafePath, check_output_fields  # noqa: PLC0415

    try:
        check_output_fields(directory, file_name)
    except UnsafePath as exc:
        option = "--file-name" if str(exc).startswith('field "fileName"') else "--directory"
        _fail(f"{option}: {exc}")


def _read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")


def send(
    file: Annotated[str, typer.Argument(help="Message file (JSON or YAML), or - for stdin.")],
    home: Home = Path("."),
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for the replies and print each node's output as it arrives, then a "
            f"summary. --wait=SECONDS waits that long (default {WAIT_DEFAULT:g}); the same "
            "as --wait --timeout SECONDS.",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help=f"With --wait: how long to wait for replies, at most {MAX_WAIT}. "
            f"Default {WAIT_DEFAULT:g}.",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Validate messages against the running node's methods, hand them to its socket input
    and print one JSON line per message: its accepted id, or what is wrong with it, with the
    message's warnings (unknown keys, "did you mean"). A message the validation refuses
    stops the whole file: nothing is sent.

    With --wait, then wait for the replies: each node's output as it arrives, then a summary
    such as "2/3 replied; ship3 still queued, id ...". Messages with replyMethod REQNone
    are waited for until delivered.
    """
    if timeout is not None and not wait:
        _fail("--timeout needs --wait")
    seconds = (WAIT_DEFAULT if timeout is None else _wait_seconds(timeout)) if wait else None
    printer = Printer(as_json=as_json, answers_as_json=True)
    run_delivery(home, _read(file), wait=seconds, printer=printer)


send.__doc__ = f"{inspect.cleandoc(send.__doc__ or '')}\n\n{EXIT_CODES_HELP}"


def cmd(
    nodes: Annotated[
        str, typer.Argument(help="Nodes to run it on: a comma list (ship1,ship2); local: here.")
    ],
    command: Annotated[
        list[str],
        typer.Argument(
            help="The command, after --. One argument is a shell command line (run with "
            "sh -c); several are the program and its arguments (run without a shell).",
            show_default=False,
        ),
    ],
    *,
    home: Home = Path("."),
    timeout: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="SECONDS",
            help=f"How long to wait for the replies, at most {MAX_WAIT}.",
        ),
    ] = 60.0,
    method_timeout: Annotated[
        int,
        typer.Option(min=1, metavar="SECONDS", help="How long the command may run on a node."),
    ] = CMD_DEFAULTS["method_timeout"],
    ack_timeout: Annotated[
        int,
        typer.Option(
            "--ack-timeout", min=1, metavar="SECONDS", help="Seconds to wait for each ACK."
        ),
    ] = CMD_DEFAULTS["ack_timeout"],
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="Delivery attempts after the first, retry-wait seconds apart: with the "
            "defaults an offline node gets the command if it is back within about 1.5 h.",
        ),
    ] = CMD_DEFAULTS["retries"],
    retry_wait: Annotated[
        int, typer.Option(min=0, metavar="SECONDS", help="Seconds between two attempts.")
    ] = CMD_DEFAULTS["retry_wait"],
    directory: Annotated[
        str, typer.Option(help="The replies are also appended to data/DIRECTORY/<node>/FILE.")
    ] = "cmd",
    file_name: Annotated[
        str, typer.Option("--file-name", help="See --directory; errors go to FILE.error.")
    ] = "cmd.log",
    as_json: AsJson = False,
) -> None:
    """Run a command on nodes and print each node's output as it arrives.

    Builds a REQCliCommand for each node, hands it to the local node (--home), waits up to
    --timeout for the replies and prints them, then a summary such as "2/3 replied; ship3
    still queued, id ...". A node that does not reply in time still gets the command when it
    is back (see `steward-otp queue ls`; cancel it with `steward-otp queue cancel ID`).

    Example: steward-otp cmd ship1,ship2 -- uptime
    """
    targets = [n.strip() for n in nodes.split(",") if n.strip()]
    if not targets:
        _fail("NODES names no node; give a comma list such as ship1,ship2")
    if not command:
        _fail("COMMAND is missing; give it after --, e.g. steward-otp cmd ship1 -- uptime")
    _wait_seconds(timeout)
    _check_output(directory, file_name)
    message = command_message(
        targets,
        command,
        ack_timeout=ack_timeout,
        retries=retries,
        retry_wait=retry_wait,
        method_timeout=method_timeout,
        directory=directory,
        file_name=file_name,
    )
    document = json.dumps([message]).encode()
    printer = Printer(as_json=as_json, answers_as_json=False)
    run_delivery(home, document, wait=timeout, printer=printer)


cmd.__doc__ = f"{inspect.cleandoc(cmd.__doc__ or '')}\n\n{EXIT_CODES_HELP}"


def split_wait_value(argv: Sequence[str]) -> list[str]:
    """``--wait=SECONDS`` as ``--wait --timeout SECONDS`` (before a ``--``), so ``--wait``
    alone stays a flag and a value can still be given."""
    out: list[str] = []
    rest = False
    for arg in argv:
        if not rest and arg.startswith("--wait="):
            out += ["--wait", "--timeout", arg.removeprefix("--wait=")]
            continue
        rest = rest or arg == "--"
        out.append(arg)
    return out


def register(app: typer.Typer) -> None:
    """Add ``send`` and ``cmd`` to the main application."""
    app.command("send")(send)
    app.command("cmd")(cmd)
