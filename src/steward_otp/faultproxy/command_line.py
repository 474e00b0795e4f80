"""The fault proxy's command line: ``python -m steward_otp.faultproxy``.

:func:`main` parses the options (a named profile, each figure of it overridable, a time
scale for its schedule), runs the proxy until SIGINT or SIGTERM, and takes SIGUSR1 (reset
every connection) and SIGUSR2 (an outage of ``--manual-outage`` seconds) meanwhile. It
returns the exit status: 0 after a signal ended it, 2 for options that make no valid
profile (argparse itself exits with 2 for malformed ones).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from steward_otp.faultproxy.profiles import PROFILES, Profile
from steward_otp.faultproxy.proxy import FaultProxy


def _host_port(text: str) -> tuple[str, int]:
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m steward_otp.faultproxy",
        description="A TCP proxy that adds latency, jitter, a bandwidth cap, outages and "
        "resets between nodes and their broker. SIGUSR1 resets every connection; SIGUSR2 "
        "starts an outage of --manual-outage seconds.",
    )
    parser.add_argument("--listen", type=_host_port, required=True, help="HOST:PORT to listen on")
    parser.add_argument(
        "--upstream", type=_host_port, required=True, help="HOST:PORT of the broker"
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="perfect")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault schedule and jitter")
    parser.add_argument("--latency-ms", type=float, help="one-way latency (overrides the profile)")
    parser.add_argument("--jitter-ms", type=float, help="one-way jitter (overrides the profile)")
    parser.add_argument(
        "--bandwidth-kbit", type=float, help="cap per direction, kbit/s; 0 = none (overrides)"
    )
    parser.add_argument("--outage-every", type=float, help="seconds between outages (overrides)")
    parser.add_argument("--outage-seconds", type=float, help="length of an outage (overrides)")
    parser.add_argument("--outage-mode", choices=["hold", "drop"], help="(overrides the profile)")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply the fault schedule by this"
    )
    parser.add_argument(
        "--manual-outage", type=float, default=10.0, help="seconds of the SIGUSR2 outage"
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning"], default="info")
    return parser


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile named by ``--profile`` with the command line's overrides applied."""
    profile = PROFILES[args.profile]
    changes: dict[str, Any] = {}
    if args.latency_ms is not None:
        changes["latency"] = args.latency_ms / 1000
    if args.jitter_ms is not None:
        changes["jitter"] = args.jitter_ms / 1000
    if args.bandwidth_kbit is not None:
        changes["bandwidth"] = args.bandwidth_kbit * 1000 / 8 if args.bandwidth_kbit > 0 else None
    if args.outage_every is not None:
        changes["outage_every"] = args.outage_every if args.outage_every > 0 else None
    if args.outage_seconds is not None:
        changes["outage_seconds"] = args.outage_seconds
    if args.outage_mode is not None:
        changes["outage_mode"] = args.outage_mode
    if changes:
        profile = attrs.evolve(profile, **changes)
    if args.time_scale != 1.0:
        profile = profile.scaled(args.time_scale)
    return profile


async def _serve_until_signalled(proxy: FaultProxy, manual_outage: float) -> None:
    signals = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(proxy.serve)
            print(
                f"faultproxy listening on {proxy.listen[0]}:{port} -> {proxy.upstream_name} "
                f"({proxy.profile.describe()}, seed {proxy.seed})",
                file=sys.stderr,
                flush=True,
            )
            async for signum in received:
                if signum == signal.SIGUSR1:
                    proxy.reset_all()
                elif signum == signal.SIGUSR2:
                    proxy.start_outage(manual_outage)
                else:
                    nursery.cancel_scope.cancel()
                    break


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy from the command line until SIGINT or SIGTERM; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        profile = profile_from_args(args)
    except ValueError as exc:
        print(f"faultproxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    proxy = FaultProxy(args.upstream, profile=profile, seed=args.seed, listen=args.listen)
    trio.run(_serve_until_signalled, proxy, args.manual_outage)
    return 0
