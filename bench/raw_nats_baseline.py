"""Transport limit: plain-asyncio nats-py request/reply round trips per second.

Runs in its own process (importing trio_asyncio changes asyncio for the whole process).
One responder connection answers every request with an empty payload, as a steward ACK
does; ``--concurrency`` requesters loop for ``--seconds``. Prints one JSON line.

    python bench/raw_nats_baseline.py --url nats://127.0.0.1:4222
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import nats
from nats.aio.msg import Msg


async def measure(
    url: str, concurrency: int, seconds: float, payload_size: int
) -> dict[str, float]:
    responder = await nats.connect(url)
    requester = await nats.connect(url)

    async def ack(msg: Msg) -> None:
        await msg.respond(b"")

    await responder.subscribe("bench.REQTest.EventACK", queue="bench", cb=ack)
    await responder.flush()
    payload = b"x" * payload_size
    done = 0
    stop_at = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await requester.request("bench.REQTest.EventACK", payload, timeout=5)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await requester.close()
    await responder.close()
    return {"round_trips": done, "seconds": elapsed, "per_second": done / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--payload-size", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(measure(args.url, args.concurrency, args.seconds, args.payload_size))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
