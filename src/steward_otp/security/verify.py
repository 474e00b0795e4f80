"""Which messages a node runs when ``enable_signature_check`` is on: the verify hooks.

**Every** method is checked, output methods included: ``REQToFile`` and its siblings write
wherever ``directory`` points (an absolute folder is allowed), so an unchecked output method
would let anyone on the broker write any file on the node. The one exception is the rule
for ``REQHello`` from a node whose key is not allowed (yet): that is how a new node, or a
node with a new key, makes its key known. Such a hello is run only when

* it is signed by the very key it carries in ``data`` (the sender holds that key), as the
  node named in ``fromNode`` (a valid node name), for this node and method, in time; and
* it writes where hellos write: ``directory`` is relative to the data folder (not ``/...``
  or ``./...``).

Everything else needs a signature that :func:`steward_otp.security.signing.check` accepts
with the allowed key of its signer. The hook answers None (run it) or the reason, which the
Subscriber reports to the central error log and sends back to the sender in the ACK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from steward_otp.config import is_valid_node_name
from steward_otp.inbound.verify import VerifyHook
from steward_otp.message import Message
from steward_otp.security.signing import (
    Expected,
    KeyLookup,
    Refusal,
    RefusalKind,
    Signature,
    SignatureFormatError,
    check,
)

__all__ = ["HELLO_METHOD", "VerifyHook", "check_hello", "decide", "signature_hook"]

HELLO_METHOD: Final = "REQHello"
PUBLIC_KEY_BYTES: Final = 32


def check_hello(message: Message, expected: Expected) -> str | None:
    """None when ``message`` is a hello that proves its sender holds the key it carries
    (see the module docstring); otherwise why it is not."""
    if len(message.data) != PUBLIC_KEY_BYTES:
        return f"its data is not a {PUBLIC_KEY_BYTES}-byte public key"
    if not is_valid_node_name(message.from_node):
        return f"fromNode {message.from_node!r} is not a valid node name"
    try:
        signer = Signature.parse(message.arg_signature).signer
    except SignatureFormatError as exc:
        return str(exc)
    if signer != message.from_node:
        return f"signed by {signer!r}, not by its fromNode {message.from_node!r}"
    directory = message.directory
    if directory.startswith("/") or directory.startswith("./"):
        return (
            f"directory {directory!r} is outside the data folder; allowed: a relative "
            "directory such as 'hello-messages'"
        )
    key = message.data
    # The key comes with the message: nothing about it is remembered.
    refusal = check(message, lambda node: key if node == signer else None, expected, remember=False)
    return None if refusal is None else refusal.reason


def decide(message: Message, keys: KeyLookup, expected: Expected) -> str | None:
    """The verdict for one message that arrived at ``expected``: None to run it, or why not.

    The reason names the message: ``signature check: message <id> from <fromNode>: <why>``
    (the central error log shows it without the id the ACK carries).
    """
    refusal: Refusal | None = check(message, keys, expected)
    if refusal is None:
        return None
    reason = refusal.reason
    if expected.method == HELLO_METHOD and refusal.kind in (
        RefusalKind.UNKNOWN_SIGNER,
        RefusalKind.BAD_SIGNATURE,
    ):
        problem = check_hello(message, expected)
        if problem is None:
            return None
        reason = f"{reason}; as a hello from a node without an allowed key: {problem}"
    return f"signature check: message {message.id} from {message.from_node}: {reason}"


def signature_hook(
    *,
    node: str,
    method: str,
    keys: KeyLookup,
    max_age: float,
    clock: Callable[[], float],
    before: Callable[[], None] | None = None,
) -> VerifyHook:
    """The verify hook of the Subscriber serving ``method`` on subject node ``node``.

    ``keys`` gives the allowed key of a signer, ``clock`` the wall-clock time, ``before``
    (optional) runs first on every call, e.g. to pick up a changed trust store.
    """

    async def verify(message: Message) -> str | None:
        if before is not None:
            before()
        return decide(message, keys, Expected(node, method, clock(), max_age))

    return verify
