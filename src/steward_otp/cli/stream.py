"""``steward-otp queue stream ls|cancel``: the messages waiting in the JetStream stream.

The outbox commands (``queue ls``, ``queue cancel``...) show what this node still has to
deliver. A message sent through JetStream leaves the outbox once the broker has stored it;
from then on it waits in the stream (``NODES``) until its node takes it. These commands show
those messages, per node they wait for, and remove them from the stream (the JetStream API's
message delete by sequence), so no node runs them. Any node on the broker can be asked: the
stream is the broker's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from steward_otp.cli.inspection import AsJson, Home, _fail, ask
from steward_otp.tree_view import render_stream_queue

stream_app = typer.Typer(
    help="Inspect and cancel the messages waiting in the JetStream stream for their node.",
    no_args_is_help=True,
)

ToNode = Annotated[
    str | None, typer.Option(help="Only messages waiting for this node.", show_default=False)
]


@stream_app.command("ls")
def stream_ls(
    home: Home = Path("."),
    as_json: AsJson = False,
    to_node: ToNode = None,
    limit: Annotated[int, typer.Option(help="At most this many.", min=1, max=10000)] = 1000,
) -> None:
    """List the messages waiting in the stream: sequence, id, the node it waits for (a
    broadcast once per node), method, sender and when the broker stored it."""
    request: dict[str, Any] = {"op": "queue.stream.ls", "limit": limit}
    if to_node:
        request["toNode"] = to_node
    messages = ask(home, request)["messages"]
    typer.echo(json.dumps(messages, indent=2) if as_json else render_stream_queue(messages))


@stream_app.command("cancel")
def stream_cancel(
    message_id: Annotated[
        str | None, typer.Argument(help="Id of the message to remove.", show_default=False)
    ] = None,
    seq: Annotated[
        int | None,
        typer.Option(help="The stream sequence to remove (see queue stream ls).", min=1),
    ] = None,
    to_node: ToNode = None,
    home: Home = Path("."),
    as_json: AsJson = False,
) -> None:
    """Remove a waiting message from the stream, by id or --seq: no node takes it any more
    (a broadcast: no node at all). With --to-node, only if it waits for that node. Exits 1
    when no such message waits in the stream."""
    if (message_id is None) == (seq is None):
        _fail("give either the id of the message or --seq (from queue stream ls)")
    request: dict[str, Any] = {"op": "queue.stream.cancel"}
    if seq is not None:
        request["seq"] = seq
    else:
        request["id"] = message_id
    if to_node:
        request["toNode"] = to_node
    answer = ask(home, request)
    if as_json:
        typer.echo(json.dumps({"id": message_id, "done": answer["done"], "seqs": answer["seqs"]}))
    elif answer["done"]:
        typer.echo("removed from the stream: seq " + ", ".join(map(str, answer["seqs"])))
    else:
        waits_for = f" for {to_node}" if to_node else ""
        typer.echo(f"not removed: no such message waits in the stream{waits_for}")
    raise typer.Exit(0 if answer["done"] else 1)


def register(queue_app: typer.Typer) -> None:
    """Add ``stream ls|cancel`` under ``steward-otp queue``."""
    queue_app.add_typer(stream_app, name="stream")
