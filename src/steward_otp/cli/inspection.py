"""CLI commands that inspect a running node: ``tree``, ``status``, ``queue``, ``audit``
(``send`` and ``cmd`` are in :mod:`steward_otp.cli.send`). Each prints text for people, or
JSON with ``--json``; ages and durations are in human units (``2m05s``).

They find the node through its home folder (``--home``, default: the current folder): the
control socket ``<home>/tmp/control.sock`` and the input socket ``<home>/tmp/steward.sock``
(or wherever ``socket_folder`` points: ``STEWARD_OTP_SOCKET_FOLDER`` or the node's config
file).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import typer

from steward_otp.cli.common import home_option
from steward_otp.tree_view import render_audit, render_queue, render_status, render_tree

# trio, the control client and the message parser are imported by the commands that use
# them: ``steward-otp version``, ``--help`` and ``run`` do not load them through this module.

PROG: Final = "steward-otp"
NOT_RUNNING: Final = 3

Home = Annotated[
    Path,
    home_option("Home folder of the node to talk to."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]


SOCKET_FOLDER_ENV: Final = "STEWARD_OTP_SOCKET_FOLDER"


def socket_folder(home: Path) -> Path:
    """The node's socket folder, found as the daemon finds it: ``STEWARD_OTP_SOCKET_FOLDER``,
    else ``socket_folder`` in its config file, else ``<home>/tmp`` (a relative folder is
    taken from ``home``). The rest of the configuration is not read: a node whose file has
    a bad value elsewhere can still be asked what it is doing."""
    text = os.environ.get(SOCKET_FOLDER_ENV, "")
    if not text:
        try:
            data = tomllib.loads((home / "etc" / "config.toml").read_text())
        except (OSError, ValueError):
            data = {}
        text = str(data.get("socket_folder") or data.get("SocketFolder") or "tmp")
    folder = Path(text)
    return folder if folder.is_absolute() else home / folder


def _fail(message: str, status: int = 2) -> NoReturn:
    typer.echo(f"{PROG}: error: {message}", err=True)
    raise typer.Exit(status)


def ask(home: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send one control request to the node at ``home``; exit 3 when no node answers."""
    import trio  # noqa: PLC0415

    from steward_otp.control.client import control_request  # noqa: PLC0415

    path = socket_folder(home) / "control.sock"
    try:
        response = trio.run(control_request, path, request)
    except (OSError, ConnectionError) as exc:
        _fail(f"no node answers on {path} ({exc}); is it running?", NOT_RUNNING)
    if not response.get("ok"):
        _fail(str(response.get("error")))
    return response


Watch = Annotated[
    float | None,
    typer.Option(
        min=0.1,
        metavar="SECONDS",
        help="Draw it again every SECONDS until Ctrl-C: in place on a terminal, one frame "
        "after the other into a pipe.",
    ),
]


def _show(frame: Callable[[], str], watch: float | None) -> None:
    if watch is None:
        typer.echo(frame())
        return
    from steward_otp.cli.watch import watch as watch_frames  # noqa: PLC0415

    watch_frames(frame, watch)


def tree(home: Home = Path("."), as_json: AsJson = False, watch: Watch = None) -> None:
    """Show the live supervision tree of a running node: every process with its path, kind or
    strategy, state, restart count, uptime, last failure and live info (bridge connection
    state, publisher queue depth)."""

    def frame() -> str:
        snapshot = ask(home, {"op": "tree"})["tree"]
        return json.dumps(snapshot, indent=2) if as_json else render_tree(snapshot)

    _show(frame, watch)


def status(home: Home = Path("."), as_json: AsJson = False, watch: Watch = None) -> None:
    """Show a running node's name, broker, connection state, outbox counts and last hellos."""

    def frame() -> str:
        answer = ask(home, {"op": "status"})["status"]
        return json.dumps(answer, indent=2) if as_json else render_status(answer)

    _show(frame, watch)


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
    watch: Watch = None,
) -> None:
    """List held messages: id, destination, method, state, attempts, age; then, for each
    node with messages waiting, how fast they are leaving and about how long is left."""
    from steward_otp.store import OUTBOX_STATE_NAMES  # noqa: PLC0415

    request: dict[str, Any] = {"op": "queue.ls"}
    if to_node:
        request["toNode"] = to_node
    for name in state or ():
        if name not in OUTBOX_STATE_NAMES:
            _fail(
                f"--state: value {name!r} is not an outbox state; "
                f"allowed: {', '.join(OUTBOX_STATE_NAMES)}"
            )
    if state:
        request["states"] = state

    def frame() -> str:
        answer = ask(home, request)
        messages = answer["messages"]
        if as_json:
            return json.dumps(messages, indent=2)
        return render_queue(messages, answer.get("draining"))

    _show(frame, watch)


@queue_app.command("cancel")
def queue_cancel(
    message_id: Annotated[str, typer.Argument(help="Id of the message to cancel.")],
    home: Home = Path("."),
    as_json: AsJson = False,
) -> None:
    """Cancel one held message by id (it is not delivered; it stays listed as cancelled).
    Exits 1 when there is no such active message."""
    done = ask(home, {"op": "queue.cancel", "id": message_id})["done"]
    if as_json:
        typer.echo(json.dumps({"id": message_id, "done": done}))
    else:
        typer.echo("cancelled" if done else "not cancelled: no such active message")
    raise typer.Exit(0 if done else 1)


@queue_app.command("retry")
def queue_retry(
    message_id: Annotated[str, typer.Argument(help="Id of a failed or cancelled message.")],
    home: Home = Path("."),
    as_json: AsJson = False,
) -> None:
    """Queue a failed or cancelled message for delivery again. Exits 1 when there is no such
    failed or cancelled message."""
    done = ask(home, {"op": "queue.retry", "id": message_id})["done"]
    if as_json:
        typer.echo(json.dumps({"id": message_id, "done": done}))
    else:
        typer.echo("queued again" if done else "not queued: no such failed or cancelled message")
    raise typer.Exit(0 if done else 1)


@queue_app.command("purge")
def queue_purge(
    home: Home = Path("."),
    to_node: Annotated[str | None, typer.Option(help="Only messages for this node.")] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            help="Only messages older than this: seconds, or 90s, 15m, 2h, 7d.",
            metavar="AGE",
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Remove queued, failed and cancelled messages (filtered by destination and/or age)."""
    request: dict[str, Any] = {"op": "queue.purge"}
    if to_node:
        request["toNode"] = to_node
    if older_than is not None:
        request["olderThan"] = _seconds(older_than, "--older-than")
    purged = ask(home, request)["purged"]
    typer.echo(json.dumps({"purged": purged}) if as_json else f"purged {purged}")


_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION: Final = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(text: str) -> float | None:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w`` as seconds; None when not one."""
    match = _DURATION.fullmatch(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def _seconds(text: str, option: str) -> float:
    seconds = parse_duration(text)
    if seconds is None:
        _fail(f"{option}: {text!r} is not a duration; allowed: seconds, or 90s, 15m, 2h, 7d")
    return seconds


def parse_since(text: str, now: float) -> float | None:
    """A wall time from ``--since``: a duration ago (``15m``, ``2h``, ``3d``) or a date and
    time (``2026-12-01``, ``2026-12-01T10:30``, local time unless it names a zone)."""
    seconds = parse_duration(text)
    if seconds is not None:
        return now - seconds
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def audit(
    *,
    home: Home = Path("."),
    message_id: Annotated[
        str | None, typer.Option("--id", help="Only this message (and nothing else).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only records written since then: a duration ago (15m, 2h, 3d) or a date "
            "and time (2026-12-01T10:30, local time).",
            metavar="WHEN",
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(help="Only messages to this node (sent) or from it (received)."),
    ] = None,
    direction: Annotated[
        str | None,
        typer.Option(help="Only sent (out) or received (in) messages.", metavar="in|out"),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, help="At most this many records (the newest).")
    ] = 100,
    as_json: AsJson = False,
) -> None:
    """Read a running node's audit log: every message it finished sending (delivered, failed,
    cancelled, purged) or handling, oldest first, with how long ago. A reply names the
    message it answers. Read through the control socket, so the node's exclusive lock on its
    database is no obstacle."""
    request: dict[str, Any] = {"op": "audit", "limit": limit}
    if message_id:
        request["id"] = message_id
    if node:
        request["node"] = node
    if direction:
        if direction not in ("in", "out"):
            _fail(f"--direction: {direction!r}; allowed: in or out")
        request["direction"] = direction
    now = time.time()
    if since:
        when = parse_since(since, now)
        if when is None:
            _fail(
                f"--since: {since!r} is neither a duration (15m, 2h, 3d) nor a date and time "
                "(2026-12-01T10:30)"
            )
        request["since"] = when
    records = ask(home, request)["records"]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
    else:
        typer.echo(render_audit(records, now))


def register(app: typer.Typer) -> None:
    """Add the inspection commands to the main application."""
    app.command("tree")(tree)
    app.command("status")(status)
    app.command("audit")(audit)
    app.add_typer(queue_app, name="queue")
    from steward_otp.cli import stream  # noqa: PLC0415 - it imports this module

    stream.register(queue_app)
