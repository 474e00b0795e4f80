"""A node with a method of your own: REQDiskUsage, served next to the built-in methods.

Runs two nodes in this process — ``central`` (with the embedded NATS broker) and ``ship1``
(which serves REQDiskUsage) — sends REQDiskUsage from central to ship1, and prints the reply.
The reply method is REQTest, which hands the reply to ``central.test_events`` in-process.

    python examples/custom_handler_node.py --home /tmp/steward-demo [--port 4222]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
from pathlib import Path

import trio

from steward_otp import HandlerContext, Message, Node, handler, load_config


@handler("REQDiskUsage", kind="ACK", description="total/used/free bytes of the data folder")
async def disk_usage(ctx: HandlerContext, msg: Message) -> bytes:
    """Reply with the disk usage of this node's data folder."""
    usage = await trio.to_thread.run_sync(shutil.disk_usage, ctx.data_dir)
    return f"{ctx.node_name}: total={usage.total} used={usage.used} free={usage.free}\n".encode()


async def demo(home: Path, port: int) -> str:
    """Start central and ship1, ask ship1 for its disk usage, return the reply text."""
    central_config = load_config(
        home / "central",
        {"node_name": "central", "embedded_broker_port": port, "start_pub_hello": 0},
    )
    ship_config = load_config(
        home / "ship1",
        {
            "node_name": "ship1",
            "broker_address": f"nats://127.0.0.1:{port}",
            "start_pub_hello": 0,
        },
    )
    # central sends REQDiskUsage but does not serve it; ship1 serves it.
    async with (
        Node(central_config, methods=[disk_usage.method]) as central,
        Node(ship_config, handlers=[disk_usage]),
    ):
        await central.submit(
            [
                Message(
                    to_node="ship1",
                    method="REQDiskUsage",
                    ack_timeout=5,
                    retries=10,
                    reply_method="REQTest",  # the reply comes back to central.test_events
                    reply_ack_timeout=5,
                    reply_retries=10,
                )
            ]
        )
        with trio.fail_after(60):
            reply = await central.test_events.receive()
        return reply.data.decode()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="folder for the nodes' homes")
    parser.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    args = parser.parse_args()
    sys.stdout.write(trio.run(demo, args.home, args.port or free_port()))


if __name__ == "__main__":
    main()
