"""The ``broker-config`` command: a nats-server configuration with one user per node.

    steward-otp broker-config --nodes central,ship1,ship2 --out /etc/nats/fleet

writes ``nats-server.conf`` and one ``<node>.nkey`` seed per node (mode 0600) into the
folder; see :mod:`steward_otp.security.broker_config` for what each node is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final

import typer

from steward_otp.cli.common import AsJson

__all__ = ["broker_config"]

EXIT_REFUSED: Final = 2


def broker_config(
    *,
    nodes: Annotated[
        str,
        typer.Option(
            help="The fleet's node names, comma-separated (e.g. central,ship1,ship2).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="An empty folder to write nats-server.conf and the <node>.nkey seeds into.",
            file_okay=False,
            show_default=False,
        ),
    ],
    central: Annotated[
        str, typer.Option(help="The central node: the only one that may delete waiting messages.")
    ] = "central",
    error_logger: Annotated[
        str | None,
        typer.Option(
            help="The node that keeps the central error log, one of --nodes (default: --central)."
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(help="The client port the server listens on (1-65535).")
    ] = 4222,
    jetstream: Annotated[
        bool,
        typer.Option(help="Turn JetStream on and allow what delivery = 'jetstream' needs."),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Write a nats-server configuration in which every node may only do what the protocol
    needs: subscribe to its own subjects and inboxes, publish requests, ACKs and replies.

    Copy each <node>.nkey to its node and set nkey_seed_file to it; start nats-server with
    -c nats-server.conf. See docs/security.md.
    """
    # The subject layout comes with the transport and trio: loaded when the command runs.
    from steward_otp.security.broker_config import (  # noqa: PLC0415
        BrokerConfigError,
        write_broker_config,
    )

    if not 1 <= port <= 65535:
        typer.echo(
            f"steward-otp: error: broker-config: --port: value {port}; allowed: 1 to 65535",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED)
    names = [name.strip() for name in nodes.split(",") if name.strip()]
    try:
        layout = write_broker_config(
            out,
            names,
            central=central,
            error_logger=error_logger,
            port=port,
            jetstream=jetstream,
        )
    except (BrokerConfigError, OSError) as exc:
        typer.echo(f"steward-otp: error: broker-config: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    if as_json:
        seeds = {node: str(path) for node, path in layout.seed_files.items()}
        typer.echo(json.dumps({"config_file": str(layout.config_file), "seed_files": seeds}))
        return
    typer.echo(f"wrote {layout.config_file}")
    for node, seed in layout.seed_files.items():
        typer.echo(f"  {node}: {seed} (copy to the node; nkey_seed_file = that path)")
