"""The outbox's per-message CPU: ``prepare`` (fill in, check, sign) against raw Ed25519.

Every message a node sends -- a request from an input, a reply from a handler -- passes
``SigningOutbox.prepare`` once before it is stored: the id, ``fromNode`` and defaults are
filled in, the node names and size are checked, and it is signed with the node's key. This
measures that step alone, in one process, for a typical small message
(``REQToFileAppend`` with a line of text), with its baselines from the same run:

* ``ed25519``: libsodium signing the message's signed bytes (the cryptographic floor);
* ``sign()``: :func:`steward_otp.security.signing.sign` of an already prepared message
  (canonical bytes, digest, signature, one build of the signed message);
* ``prepare_all``: a batch of :data:`MAX_SIGNING_BATCH` messages prepared together, as an
  input's document is, under one batch signature, per message;
* ``check``: what a checking receiver spends on the signature of a message signed alone,
  and per message of a batch (the batch's signature verified once, then remembered).

    .venv/bin/python bench/prepare_sign.py [--messages 20000] [--json]

Figures only; nothing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import nacl.signing

from steward_otp.message import Message, MessageDefaults
from steward_otp.methods import builtin_table
from steward_otp.security import signing
from steward_otp.security.outbox import SigningOutbox
from steward_otp.security.signing import (
    MAX_SIGNING_BATCH,
    Expected,
    canonical_bytes,
    check,
    sign,
    sign_batch,
)
from steward_otp.store import Store

DAY = 86400.0


class BenchSigner:
    """A node key, signing as ``central`` now."""

    def __init__(self) -> None:
        self.key = nacl.signing.SigningKey.generate()

    def sign(self, message: Message) -> Message:
        return sign(message, self.key, signer="central", now=time.time())

    def sign_batch(self, batch: Sequence[list[Any]]) -> None:
        sign_batch(batch, self.key, signer="central", now=time.time())


def per_call_us(call: Callable[[], object], count: int) -> float:
    """Microseconds per call of ``call``, best of three rounds of ``count`` calls."""
    for _ in range(count // 10):
        call()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(count):
            call()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20000, help="calls per round")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()

    signer = BenchSigner()
    outbox = SigningOutbox(
        Store(Path(tempfile.mkdtemp(prefix="steward-prepare-")) / "steward.db"),
        "central",
        signer=signer,
        table=builtin_table(),
        defaults=MessageDefaults(),
        compress_threshold=None,
    )
    message = Message(
        to_node="ship1",
        method="REQToFileAppend",
        method_args=("log",),
        data=b"a line of text, as an input hands it over\n",
        directory="logs",
        file_name="ship1.log",
    )
    prepared = outbox.prepare(message)
    batch = [message] * MAX_SIGNING_BATCH
    signed_bytes = canonical_bytes(prepared, signer="central", signed_at_ms=1)

    figures = {
        "ed25519_us": per_call_us(lambda: signer.key.sign(signed_bytes), args.messages),
        "sign_us": per_call_us(lambda: signer.sign(prepared), args.messages),
        "prepare_us": per_call_us(lambda: outbox.prepare(message), args.messages),
        "prepare_batch_us": per_call_us(
            lambda: outbox.prepare_all(batch), max(args.messages // MAX_SIGNING_BATCH, 10)
        )
        / MAX_SIGNING_BATCH,
    }
    expected = Expected(node="ship1", method=message.method, now=time.time(), max_age=DAY)
    public = bytes(signer.key.verify_key)
    batch_signed = outbox.prepare_all([message] * MAX_SIGNING_BATCH)

    refusals = [check(m, lambda _node: public, expected) for m in [prepared, *batch_signed]]
    if any(refusals):
        raise SystemExit(f"the signatures measured do not verify: {refusals}")

    def check_batch() -> None:
        signing._VERIFIED_BATCHES.clear()  # each round verifies the batch once, as it arrives
        for each in batch_signed:
            check(each, lambda _node: public, expected)

    figures["check_us"] = per_call_us(
        lambda: check(prepared, lambda _node: public, expected), args.messages // 4
    )
    figures["check_batch_us"] = (
        per_call_us(check_batch, max(args.messages // MAX_SIGNING_BATCH // 4, 10))
        / MAX_SIGNING_BATCH
    )
    figures["prepare_over_ed25519"] = figures["prepare_us"] / figures["ed25519_us"]
    out = sys.stderr if args.json else sys.stdout
    print(f"ed25519 signature (libsodium, the floor)   {figures['ed25519_us']:6.1f} us", file=out)
    print(f"sign() of a prepared message              {figures['sign_us']:6.1f} us", file=out)
    print(f"SigningOutbox.prepare (fill, check, sign)  {figures['prepare_us']:6.1f} us", file=out)
    print(
        f"prepare_all, a batch of {MAX_SIGNING_BATCH}, per message     "
        f"{figures['prepare_batch_us']:6.1f} us",
        file=out,
    )
    print(f"check, a message signed alone              {figures['check_us']:6.1f} us", file=out)
    print(
        f"check, per message of a batch of {MAX_SIGNING_BATCH}          "
        f"{figures['check_batch_us']:6.1f} us",
        file=out,
    )
    print(
        f"prepare / ed25519                          {figures['prepare_over_ed25519']:6.2f}",
        file=out,
    )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
