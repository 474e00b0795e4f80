"""What the wire and the inputs can carry: every input limit, in one place.

Each check here is pure and returns the *reason* a value is refused (``None``: fine), so
that callers can word the error with the field's name; :mod:`steward_otp.message` uses
them to validate every message that enters through an input.

Guarantees, for a message that passed them:

* every node name (``toNode``, ``toNodes``, ``fromNode``, ``relayViaNode``,
  ``relayFromNode``) is at most :data:`MAX_NODE_NAME_LENGTH` characters of NATS subject
  tokens, so its subject always fits the broker's control line (4096 bytes by default);
* ``directory`` and ``fileName`` hold no NUL or other control character;
* no node name, ``directory`` or ``fileName`` holds a lone surrogate (text that has no UTF-8
  form, such as undecodable bytes of a command line argument): :func:`text_problem`;
* the message's CBOR encoding, the form stored in the outbox and sent on the wire, leaves
  :data:`WIRE_HEADROOM` bytes for headers and ids below the broker's ``max_payload``, so the
  broker never refuses it.

Which ``max_payload``: the one the connected server announced in its INFO, as the node's
transport reports it (:attr:`steward_otp.transport.Transport.max_payload`; until the first
connection, the configured value, nats-server's default :data:`MAX_MESSAGE_BYTES`). A node
makes its transport the source for every check made in its tasks with
:func:`payload_limit_from`: a context variable, so several nodes in one process (each with
its own broker) never see each other's limit, and parsing in worker threads sees it too.
Outside a node, the checks use :data:`MAX_MESSAGE_BYTES`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from steward_otp.message import Message

__all__ = [
    "MAX_DOCUMENT_EXPANSION",
    "MAX_ENCODED_MESSAGE_BYTES",
    "MAX_MESSAGES_PER_DOCUMENT",
    "MAX_MESSAGE_BYTES",
    "MAX_NODE_NAME_LENGTH",
    "NODE_NAME_RULE",
    "PATH_TEXT_RULE",
    "SIZE_RULE",
    "WIRE_HEADROOM",
    "current_max_payload",
    "encoded_size",
    "max_encoded_bytes",
    "node_name_problem",
    "path_text_problem",
    "payload_limit_from",
    "size_problem",
    "size_rule",
    "surely_fits",
    "text_problem",
    "unsendable_reason",
]

MAX_NODE_NAME_LENGTH: Final = 128
"""Longest node name, in characters, a message may name."""

MAX_MESSAGE_BYTES: Final = 1024 * 1024
"""nats-server's default ``max_payload`` (1 MiB): the limit used until a server says
otherwise (see the module docstring)."""

WIRE_HEADROOM: Final = 4096
"""Bytes kept free below :data:`MAX_MESSAGE_BYTES` for the NATS headers, the id the outbox
assigns, the fan-out suffix and a relay envelope."""

MAX_ENCODED_MESSAGE_BYTES: Final = MAX_MESSAGE_BYTES - WIRE_HEADROOM
"""Largest CBOR encoding (uncompressed) of a message accepted at input with nats-server's
default ``max_payload``; see :func:`max_encoded_bytes` for the limit in effect."""

_SMALLEST_MAX_PAYLOAD: Final = 2 * WIRE_HEADROOM
"""A server announcing less is taken as announcing this much: a message must have room."""

_MAX_PAYLOAD_SOURCE: Final = contextvars.ContextVar[Callable[[], int]](
    "steward_otp_max_payload", default=lambda: MAX_MESSAGE_BYTES
)


def current_max_payload() -> int:
    """The broker's ``max_payload`` the checks in this task use (see the module docstring).

    A source that fails or gives nonsense counts as nats-server's default.
    """
    try:
        value = _MAX_PAYLOAD_SOURCE.get()()
    except Exception:  # a transport's figure must never break a check
        return MAX_MESSAGE_BYTES
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return MAX_MESSAGE_BYTES
    return max(value, _SMALLEST_MAX_PAYLOAD)


def max_encoded_bytes() -> int:
    """Largest CBOR encoding of a message accepted now: :func:`current_max_payload` less
    :data:`WIRE_HEADROOM`."""
    return current_max_payload() - WIRE_HEADROOM


@contextlib.contextmanager
def payload_limit_from(source: Callable[[], int]) -> Iterator[None]:
    """Within the block, the checks of this task and of every task and worker thread it
    starts use ``source()`` (read at each check, e.g. ``lambda: transport.max_payload``)
    as the broker's ``max_payload``."""
    token = _MAX_PAYLOAD_SOURCE.set(source)
    try:
        yield
    finally:
        _MAX_PAYLOAD_SOURCE.reset(token)


MAX_MESSAGES_PER_DOCUMENT: Final = 1000
"""Most messages one input document may hold, counting every ``toNodes`` destination."""

MAX_DOCUMENT_EXPANSION: Final = 16 * 1024 * 1024
"""Largest size a YAML document may reach once its aliases are expanded (one per node plus
the characters of every scalar, each alias counted in full)."""

NODE_NAME_RULE: Final = (
    f'a node name (or "local") of at most {MAX_NODE_NAME_LENGTH} characters: NATS subject '
    'tokens separated by single ".", without whitespace, control characters, "*", ">", '
    '"/" or "\\"'
)
PATH_TEXT_RULE: Final = "text without NUL or other control characters"

# Whitespace, C0 and C1 control characters, DEL, the NATS wildcards and path separators.
_NODE_TOKEN: Final = re.compile(r"[^\s*>/\\\x00-\x1f\x7f-\x9f]+")
_FORBIDDEN_IN_NODE: Final = re.compile(r"[\s*>/\\\x00-\x1f\x7f-\x9f]")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")


def _char_text(char: str) -> str:
    return repr(char) if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}"


def text_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode text (it holds a lone surrogate, so it has no UTF-8
    form and can be neither stored nor sent), or None when it is."""
    bad = _SURROGATE.search(text)
    if bad is None:
        return None
    return (
        f"contains U+{ord(bad.group()):04X} at position {bad.start()}, a lone surrogate: "
        "not valid Unicode text"
    )


@functools.lru_cache(maxsize=4096)
def node_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a node name on the wire, or None when it can.

    ``name`` must be 1 to :data:`MAX_NODE_NAME_LENGTH` characters of dot-separated NATS
    subject tokens (see :data:`NODE_NAME_RULE`).
    """
    if len(name) > MAX_NODE_NAME_LENGTH:
        return f"is {len(name)} characters long"
    if not name:
        return "is empty"
    problem = text_problem(name)
    if problem is not None:
        return problem
    bad = _FORBIDDEN_IN_NODE.search(name)
    if bad is not None:
        return f"contains {_char_text(bad.group())} at position {bad.start()}"
    if not all(_NODE_TOKEN.fullmatch(token) for token in name.split(".")):
        return "has an empty dot-separated part"
    return None


@functools.lru_cache(maxsize=4096)
def path_text_problem(text: str) -> str | None:
    """Why ``text`` cannot be part of a file path (a control character or a lone surrogate),
    or None."""
    problem = text_problem(text)
    if problem is not None:
        return problem
    bad = _CONTROL.search(text)
    if bad is None:
        return None
    return f"contains the control character {_char_text(bad.group())} at position {bad.start()}"


def _rough_size(message: Message) -> int:
    """An upper bound of the CBOR size of ``message``, without encoding it: 9 bytes of
    header for each text and list and up to 4 bytes for each character."""
    texts = (
        message.to_node,
        message.id,
        message.method,
        message.reply_method,
        message.from_node,
        message.directory,
        message.file_name,
        message.relay_via_node,
        message.relay_reply_method,
        message.relay_from_node,
        message.relay_original_method,
    )
    size = 64 + len(message.data) + len(message.arg_signature)
    size += 9 * len(texts) + 4 * sum(map(len, texts))
    for items in (message.to_nodes, message.method_args, message.reply_method_args):
        size += 9 + 9 * len(items) + 4 * sum(map(len, items))
    size += 9 * (8 + len(message.schedule))
    if message.previous_message is not None:
        size += _rough_size(message.previous_message)
    return size


def encoded_size(message: Message) -> int:
    """The size in bytes of the CBOR encoding of ``message`` (as the outbox stores it)."""
    from steward_otp import codec  # noqa: PLC0415  # codec imports message, which imports us

    return len(codec.encode(message, compress_threshold=None).payload)


def surely_fits(message: Message, *, spare: int = 0) -> bool:
    """True when ``message``, with ``spare`` bytes more, is sure to be within
    :func:`max_encoded_bytes` on an upper bound of its size (nothing is encoded); False
    says only that it may not be."""
    return _rough_size(message) + spare <= max_encoded_bytes()


def size_problem(message: Message) -> tuple[str, str] | None:
    """``(field, reason)`` when ``message`` encodes to more than :func:`max_encoded_bytes`,
    else None. ``field`` names the largest field; ``reason`` names the broker's limit.

    Small messages are passed on an upper bound of their size without being encoded.
    """
    max_payload = current_max_payload()
    limit = max_payload - WIRE_HEADROOM
    if _rough_size(message) <= limit:
        return None
    try:
        size = encoded_size(message)
    except ValueError:  # a lone surrogate: reported by the reader as a field error
        return None
    if size <= limit:
        return None
    field, field_size = _largest_field(message)
    return field, (
        f"is {field_size} bytes; the whole message would be {size} bytes encoded, more than "
        f"the broker can carry (its max_payload is {max_payload} bytes, less {WIRE_HEADROOM} "
        "for headers and ids)"
    )


def unsendable_reason(message: Message) -> str | None:
    """Why ``message``, already in an outbox, can never be published (an invalid node name,
    a size over the broker's ``max_payload`` in effect), or None. For the publisher, so
    that such a message is failed with the reason instead of being retried for ever."""
    from steward_otp.message import wire_errors  # noqa: PLC0415  # message imports us

    problems = wire_errors(message)
    return "; ".join(str(problem) for problem in problems) if problems else None


def _largest_field(message: Message) -> tuple[str, int]:
    sizes = {
        "data": len(message.data),
        "argSignature": len(message.arg_signature),
        "methodArgs": sum(len(a.encode("utf-8", "replace")) for a in message.method_args),
        "replyMethodArgs": sum(
            len(a.encode("utf-8", "replace")) for a in message.reply_method_args
        ),
        "toNodes": sum(len(n.encode("utf-8", "replace")) for n in message.to_nodes),
        "previousMessage": (
            0 if message.previous_message is None else encoded_size(message.previous_message)
        ),
    }
    # "data" wins ties: it is where large content usually is.
    field = max(sizes, key=lambda name: (sizes[name], name == "data"))
    return field, sizes[field]


def size_rule() -> str:
    """What :func:`size_problem` allows now, for error texts (names the broker's limit)."""
    max_payload = current_max_payload()
    return (
        f"a message of at most {max_payload - WIRE_HEADROOM} bytes encoded (the broker's "
        f"max_payload of {max_payload} bytes less {WIRE_HEADROOM} for headers and ids); "
        "send large files with REQCopySrc"
    )


SIZE_RULE: Final = size_rule()
"""What :func:`size_problem` allows with nats-server's default ``max_payload``; see
:func:`size_rule` for the limit in effect."""
