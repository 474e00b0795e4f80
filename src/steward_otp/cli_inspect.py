"""CLI commands that talk to a running node: ``tree``, ``status``, ``send``, ``queue``.

They find the node through its home folder (``--home``, default: the current folder): the
control socket ``<home>/tmp/control.sock`` and the input socket ``<home>/tmp/steward.sock``
(or wherever ``socket_folder`` in the node's config file points).
"""

from __future__ import annotations

import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import typer

from steward_otp.tree_view import render_status, render_tree

# trio, the control client and the message parser are imported by the commands that use
# them: ``steward-otp version``, ``--help`` and ``run`` do not load them through this module.

PROG: Final = "steward-otp"
NOT_RUNNING: Final = 3

Home = Annotated[
    Path,
    typer.Option(
        envvar="STEWARD_OTP_HOME",
        help="Home folder of the node to talk to.",
        show_default="the current folder",
        file_okay=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]


def socket_folder(home: Path) -> Path:
    """The node's socket folder: ``socket_folder`` from its config file, else ``<home>/tmp``."""
    config_file = home / "etc" / "config.toml"
    try:
        data = tomllib.loads(config_file.read_text())
    except (OSError, ValueError):
        return home / "tmp"
    folder = Path(str(data.get("socket_folder") or data.get("SocketFolder") or "tmp"))
    return folder if folder.is_absolute() else home / folder


def _fail(message: str, status: int = 2) -> NoReturn:
    typer.echo(f"{PROG}: error: {message}", err=True)
    raise typer.Exit(status)


def ask(home: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send one control request to the node at ``home``; exit 3 when no node answers."""
    import trio  # noqa: PLC0415

    from steward_otp.control import control_request  # noqa: PLC0415

    path = socket_folder(home) / "control.sock"
    try:
        response = trio.run(control_request, path, request)
    except (OSError, ConnectionError) as exc:
        _fail(f"no node answers on {path} ({exc}); is it running?", NOT_RUNNING)
    if not response.get("ok"):
        _fail(str(response.get("error")))
    return response


def tree(
    home: Home = Path("."),
    as_json: AsJson = False,
    watch: Annotated[
        float | None,
        typer.Option(help="Refresh in place every SECONDS until interrupted.", metavar="SECONDS"),
    ] = None,
) -> None:
    """Show the live supervision tree of a running node: every process with its path, kind or
    strategy, state, restart count, uptime, last failure and live info (bridge connection
    state, publisher queue depth)."""
    while True:
        response = ask(home, {"op": "tree"})
        text = json.dumps(response["tree"], indent=2) if as_json else render_tree(response["tree"])
        if watch is None:
            typer.echo(text)
            return
        # On a terminal each frame replaces the last; into a pipe frames follow each other.
        clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
        sys.stdout.write(clear + text + "\n\n")
        sys.stdout.flush()
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            return


def status(home: Home = Path("."), as_json: AsJson = False) -> None:
    """Show a running node's name, broker, connection state, outbox counts and last hellos."""
    response = ask(home, {"op": "status"})
    typer.echo(
        json.dumps(response["status"], indent=2) if as_json else render_status(response["status"])
    )


def send(
    file: Annotated[str, typer.Argument(help="Message file (JSON or YAML), or - for stdin.")],
    home: Home = Path("."),
) -> None:
    """Validate messages locally, hand them to the node's socket input, and print one JSON
    line per message: its accepted id, or what is wrong with it. Exits 1 if any was rejected."""
    import trio  # noqa: PLC0415

    from steward_otp.inputs.unix_server import send_document  # noqa: PLC0415
    from steward_otp.message import parse_messages  # noqa: PLC0415

    document = sys.stdin.buffer.read() if file == "-" else _read(Path(file))
    local = parse_messages(document)
    if local.errors:
        for error in local.errors:
            typer.echo(json.dumps({"status": "rejected", **error.to_dict()}))
        raise typer.Exit(1)
    path = socket_folder(home) / "steward.sock"
    try:
        answers = trio.run(send_document, path, document)
    except OSError as exc:
        _fail(f"no node answers on {path} ({exc}); is it running?", NOT_RUNNING)
    for answer in answers:
        typer.echo(json.dumps(answer))
    if any(a.get("status") != "accepted" for a in answers):
        raise typer.Exit(1)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


queue_app = typer.Typer(
    help="Inspect and control the messages a node holds for delivery.", no_args_is_help=True
)


@queue_app.command("ls")
def queue_ls(
    home: Home = Path("."),
    as_json: AsJson = False,
    to_node: Annotated[str | None, typer.Option(help="Only messages for this node.")] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only messages in this state (queued, in_flight, failed, ...)."),
    ] = None,
) -> None:
    """List held messages: id, destination, method, state, attempts, age."""
    request: dict[str, Any] = {"op": "queue.ls"}
    if to_node:
        request["toNode"] = to_node
    if state:
        request["states"] = state
    messages = ask(home, request)["messages"]
    if as_json:
        typer.echo(json.dumps(messages, indent=2))
        return
    typer.echo(f"{'ID':<46} {'TO':<16} {'METHOD':<20} {'STATE':<10} {'TRIES':>5} {'AGE':>8}")
    for m in messages:
        typer.echo(
            f"{m['id']:<46} {m['toNode']:<16} {m['method']:<20} {m['state']:<10} "
            f"{m['attempts']:>5} {m['age']:>7.0f}s"
        )


@queue_app.command("cancel")
def queue_cancel(
    message_id: Annotated[str, typer.Argument(help="Id of the message to cancel.")],
    home: Home = Path("."),
) -> None:
    """Cancel one held message by id (it is not delivered; it stays listed as cancelled)."""
    done = ask(home, {"op": "queue.cancel", "id": message_id})["done"]
    typer.echo("cancelled" if done else "not cancelled: no such active message")
    raise typer.Exit(0 if done else 1)


@queue_app.command("retry")
def queue_retry(
    message_id: Annotated[str, typer.Argument(help="Id of a failed or cancelled message.")],
    home: Home = Path("."),
) -> None:
    """Queue a failed or cancelled message for delivery again."""
    done = ask(home, {"op": "queue.retry", "id": message_id})["done"]
    typer.echo("queued again" if done else "not queued: no such failed or cancelled message")
    raise typer.Exit(0 if done else 1)


@queue_app.command("purge")
def queue_purge(
    home: Home = Path("."),
    to_node: Annotated[str | None, typer.Option(help="Only messages for this node.")] = None,
    older_than: Annotated[
        float | None, typer.Option(help="Only messages older than SECONDS.", metavar="SECONDS")
    ] = None,
) -> None:
    """Remove queued, failed and cancelled messages (filtered by destination and/or age)."""
    request: dict[str, Any] = {"op": "queue.purge"}
    if to_node:
        request["toNode"] = to_node
    if older_than is not None:
        request["olderThan"] = older_than
    typer.echo(f"purged {ask(home, request)['purged']}")


def register(app: typer.Typer) -> None:
    """Add the inspection commands to the main application."""
    app.command("tree")(tree)
    app.command("status")(status)
    app.command("send")(send)
    app.add_typer(queue_app, name="queue")
