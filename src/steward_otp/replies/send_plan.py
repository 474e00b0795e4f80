"""What ``send`` and ``cmd`` hand to a node and how their outcome reads, without the CLI.

Pure helpers shared by the command line (:mod:`steward_otp.cli.send`) and the web view, so
both build the same message and print the same summary; importing this module loads no
command-line library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from steward_otp.message import ParseResult

__all__ = [
    "CMD_DEFAULTS",
    "FAILED",
    "MAX_QUIET",
    "MAX_WAIT",
    "NO_ANSWER",
    "OK",
    "command_message",
    "local_rejections",
    "summarise",
]

MAX_WAIT: Final = 7 * 86400
"""Longest a ``replies`` watch may wait, in seconds (its ``timeout``): the control operation
refuses more, and ``send --wait`` and ``cmd`` refuse a longer ``--timeout`` before sending."""
MAX_QUIET: Final = 3600
"""Longest quiet period (``quiet``, seconds) a ``replies`` watch may ask for."""

OK: Final = 0
"""Every message accepted and (waiting) every node replied without error."""
FAILED: Final = 1
"""A message was rejected, a reply is an error, or a delivery failed."""
NO_ANSWER: Final = 3
"""Some node did not reply in time (or no node answers at all)."""


def local_rejections(result: ParseResult) -> list[dict[str, Any]]:
    """The answers for what the local validation refused, in the input's answer shape."""
    from steward_otp.inputs.intake import Answer  # noqa: PLC0415

    def warnings_of(index: int | None) -> tuple[Any, ...]:
        return tuple(w for w in result.warnings if w.index in (index, None))

    return [
        Answer(index=e.index, accepted=False, error=e, warnings=warnings_of(e.index)).to_dict()
        for e in result.errors
    ]


def summarise(messages: Sequence[dict[str, Any]], timed_out: bool) -> tuple[str, int]:
    """The summary line and the exit status for the final states of the watched messages."""
    want_reply = [m for m in messages if m.get("expectsReply", True)]
    replied = [m for m in want_reply if m["replies"]]
    errors = [m for m in replied if m["errors"]]
    parts: list[str] = []
    if want_reply:
        text = f"{len(replied)}/{len(want_reply)} replied"
        if errors:
            text += f" ({len(errors)} with an error: {', '.join(m['node'] for m in errors)})"
        parts.append(text)
    delivery_only = [m for m in messages if not m.get("expectsReply", True)]
    if delivery_only:
        delivered = sum(m["state"] == "delivered" for m in delivery_only)
        parts.append(f"{delivered}/{len(delivery_only)} delivered")
    broken = False
    pending = False
    for m in messages:
        settled = m["replies"] or (not m.get("expectsReply", True) and m["state"] == "delivered")
        if settled:
            continue
        node = m["node"] or "?"
        state = m["state"]
        count = m.get("attempts") or 0
        tries = f", {count} attempt{'s' if count != 1 else ''}" if count else ""
        if state in ("queued", "in_flight"):
            pending = True
            parts.append(f"{node} still queued{tries}, id {m['id']}")
        elif state == "delivered":
            pending = True
            parts.append(f"{node} got it, no reply yet, id {m['id']}")
        elif state in ("failed", "cancelled", "purged"):
            broken = True
            why = f": {m['reason']}" if m.get("reason") else ""
            parts.append(f"{node} {state}{why}, id {m['id']}")
        else:
            pending = True
            parts.append(f"{node} not heard of, id {m['id']}")
    if errors or broken:
        status = FAILED
    elif pending or timed_out:
        status = NO_ANSWER
    else:
        status = OK
    return "; ".join(parts), status


CMD_DEFAULTS: Final = {
    "ack_timeout": 5,
    "retry_wait": 10,
    "retries": 360,
    "method_timeout": 60,
}


def command_message(
    nodes: Sequence[str],
    command: Sequence[str],
    *,
    ack_timeout: int,
    retries: int,
    retry_wait: int,
    method_timeout: int,
    directory: str,
    file_name: str,
) -> dict[str, Any]:
    """The REQCliCommand message ``cmd`` sends (as a document mapping)."""
    argv = ["sh", "-c", command[0]] if len(command) == 1 else list(command)
    return {
        "toNodes": list(nodes),
        "method": "REQCliCommand",
        "methodArgs": argv,
        "replyMethod": "REQToFileAppend",
        "directory": directory,
        "fileName": file_name,
        "ACKTimeout": ack_timeout,
        "retries": retries,
        "retryWait": retry_wait,
        "methodTimeout": method_timeout,
        "replyACKTimeout": ack_timeout,
        "replyRetries": retries,
    }
