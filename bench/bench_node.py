"""A node for benchmarks: the daemon plus REQBenchEcho, which replies with the data it got.

python bench/bench_node.py HOME NAME BROKER_URL [core|jetstream]
"""

from __future__ import annotations

import sys
from pathlib import Path

from steward_otp.config import load_config
from steward_otp.daemon import run_daemon
from steward_otp.handlers import HandlerContext, handler
from steward_otp.logs import configure_logging
from steward_otp.message import Message


@handler("REQBenchEcho", quick=True, description="reply with the request's data")
async def bench_echo(ctx: HandlerContext, msg: Message) -> bytes | None:
    """Echo the data back as the reply."""
    return msg.data


def main() -> None:
    home, name, url = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    delivery = sys.argv[4] if len(sys.argv) > 4 else "core"
    settings = {"node_name": name, "broker_address": url, "start_pub_hello": 0}
    config = load_config(home, {**settings, "log_level": "info", "delivery": delivery})
    configure_logging(config.log_level, config.log_console_timestamps)
    raise SystemExit(run_daemon(config, handlers=[bench_echo]))


if __name__ == "__main__":
    main()
