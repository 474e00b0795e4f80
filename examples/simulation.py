"""A fleet in one process: a central node and N ships, one command to all of them.

Starts ``central`` with the embedded NATS broker and ``ship1..shipN`` connected to it, sends
one REQCliCommand to every ship (as an operator's ``toNodes`` message through central's
input path), then waits until every ship has answered and prints the answers. Useful to try
configurations, handlers or failure scenarios without machines.

    python examples/simulation.py --home /tmp/steward-fleet --ships 3
"""

from __future__ import annotations

import argparse
import json
import socket
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from steward_otp import Node, load_config


async def simulate(home: Path, ships: int, port: int) -> dict[str, str]:
    """Run the fleet, send the command, return each ship's answer."""
    names = [f"ship{i}" for i in range(1, ships + 1)]
    settings = {"start_pub_hello": 0, "nats_connect_retry_interval": 0.2}
    central_config = load_config(
        home / "central", {"node_name": "central", "embedded_broker_port": port, **settings}
    )
    async with AsyncExitStack() as stack:
        central = await stack.enter_async_context(Node(central_config))
        for name in names:
            config = load_config(
                home / name,
                {"node_name": name, "broker_address": f"nats://127.0.0.1:{port}", **settings},
            )
            await stack.enter_async_context(Node(config))
        document = {
            "toNodes": names,
            "method": "REQCliCommand",
            "methodArgs": ["bash", "-c", "echo hello from the node in $PWD"],
            "replyMethod": "REQTest",  # answers arrive on central.test_events
            "ACKTimeout": 5,
            "retries": 10,
            "methodTimeout": 10,
        }
        answers = await central.accept_document(json.dumps([document]))
        assert all(a.accepted for a in answers), answers
        results: dict[str, str] = {}
        with trio.fail_after(60):
            while len(results) < len(names):
                reply = await central.test_events.receive()
                results[reply.from_node] = reply.data.decode().strip()
        return dict(sorted(results.items()))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="folder for the nodes' homes")
    parser.add_argument("--ships", type=int, default=3, help="how many ships (default 3)")
    parser.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    args = parser.parse_args()
    answers = trio.run(simulate, args.home, args.ships, args.port or free_port())
    for name, text in answers.items():
        print(f"{name}: {text}")


if __name__ == "__main__":
    main()
