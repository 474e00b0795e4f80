"""Checks of single setting values, and the small parsers of list settings.

The validators here are the ``validator=`` of the :class:`~steward_otp.config.Config`
fields: each takes ``(instance, attribute, value)``, returns nothing, changes nothing, and
raises ``_Invalid`` naming the field, the bad value and what is allowed. A few
(``_tls_key_file``, ``_creds_file``, ``_acl_check``) also read other fields of the instance
(attrs runs validators once every field is set).

The public helpers are pure functions the rest of the node uses too: :func:`is_valid_node_name`
(node names are NATS subject tokens and folder names), :func:`node_names_setting` and
:func:`method_names_setting` (comma-separated list settings), :func:`decode_public_key`
(base64 ed25519 public keys).

Depends only on :mod:`~steward_otp.config.errors`.
"""

import base64
import binascii
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs

from steward_otp.config.errors import _Invalid

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _number(*, minimum: float, inclusive: bool, unit: str, whole: bool = False) -> _Validator:
    kind = "a whole number" if whole else "a number"
    bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
    allowed = f"must be {kind}{unit}, {bound}"

    def check(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(attribute.name, value, allowed)
        if (whole and not isinstance(value, int)) or not math.isfinite(value):
            raise _Invalid(attribute.name, value, allowed)
        if value < minimum or (value == minimum and not inclusive):
            raise _Invalid(attribute.name, value, allowed)

    return check


_seconds_positive = _number(minimum=0, inclusive=False, unit=" of seconds")
_seconds_or_zero = _number(minimum=0, inclusive=True, unit=" of seconds")
_whole_seconds = _number(minimum=1, inclusive=True, unit=" of seconds", whole=True)
_count_or_zero = _number(minimum=0, inclusive=True, unit="", whole=True)


def _port(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Invalid(attribute.name, value, "must be a port number from 1 to 65535")


def _flag(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, bool):
        raise _Invalid(attribute.name, value, "must be true or false")


def _one_of(*choices: str) -> _Validator:
    allowed = "must be one of " + ", ".join(repr(c) for c in choices)

    def check(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
        if value not in choices:
            raise _Invalid(attribute.name, value, allowed)

    return check


_NODE_NAME_ALLOWED: Final = (
    "must be a non-empty NATS subject token sequence: tokens separated by single '.', "
    "no empty token, no whitespace, no control characters, no lone surrogates and none of "
    "'*', '>', '/', '\\'"
)
# Lone surrogates (undecodable bytes of a command line argument) are not text either.
_NODE_NAME_TOKEN: Final = re.compile(r"[^\s*>/\\\x00-\x1f\x7f\ud800-\udfff]+")


def is_valid_node_name(name: str) -> bool:
    """Whether *name* can be a node name: a NATS subject token sequence that is also a safe
    single path component (node names become folder names under the data folder)."""
    return bool(name) and all(_NODE_NAME_TOKEN.fullmatch(token) for token in name.split("."))


def _node_name(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or not is_valid_node_name(value):
        raise _Invalid(attribute.name, value, _NODE_NAME_ALLOWED)


def node_names_setting(text: str) -> frozenset[str]:
    """The names of a comma-separated node list setting (``"*"`` stands for any node)."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _node_list(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or not all(
        name == "*" or is_valid_node_name(name) for name in node_names_setting(value)
    ):
        raise _Invalid(
            attribute.name,
            value,
            "must be empty, '*' (any node) or node names separated by commas",
        )


_HOST_PORT: Final = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]*):(?P<port>\d{1,5})")
_LISTEN_ALLOWED: Final = (
    "must be empty (off) or HOST:PORT with PORT from 1 to 65535, "
    "e.g. '127.0.0.1:8080', '[::1]:8080' or ':8080' (all interfaces)"
)
_BROKER_SCHEMES: Final = ("nats", "tls", "ws", "wss")
_BROKER_ALLOWED: Final = (
    "must be empty (use the embedded broker) or HOST:PORT, optionally prefixed with "
    "nats://, tls://, ws:// or wss://, with PORT from 1 to 65535, e.g. 'nats://10.0.0.5:4222' "
    "or 'nats://user:password@10.0.0.5:4222'; several servers of one cluster comma-separated, "
    "e.g. 'nats://10.0.0.5:4222,nats://10.0.0.6:4222' (not mixing ws/wss with nats/tls)"
)


def _is_host_port(text: str, *, host_required: bool) -> bool:
    match = _HOST_PORT.fullmatch(text)
    if match is None or (host_required and not match["host"]):
        return False
    return 1 <= int(match["port"]) <= 65535


def _listen_address(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or (value and not _is_host_port(value, host_required=False)):
        raise _Invalid(attribute.name, value, _LISTEN_ALLOWED)


def _broker_address(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str):
        raise _Invalid(attribute.name, value, _BROKER_ALLOWED)
    if not value:
        return
    schemes = [_broker_scheme(address.strip()) for address in value.split(",")]
    websocket = {scheme in ("ws", "wss") for scheme in schemes}
    if None in schemes or len(websocket) > 1:  # nats-py refuses to mix ws and plain
        raise _Invalid(attribute.name, value, _BROKER_ALLOWED)


def _broker_scheme(address: str) -> str | None:
    """The scheme of one broker address (``nats`` when it has none); None when invalid."""
    scheme, separator, rest = address.partition("://")
    host_port = rest.rpartition("@")[2] if separator else address  # user:password@ allowed
    if separator and scheme not in _BROKER_SCHEMES:
        return None
    if not _is_host_port(host_port, host_required=True):
        return None
    return scheme if separator else "nats"


_FOLDER_ALLOWED: Final = "must be a non-empty folder path, relative to home or absolute"


def _folder(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, Path) or str(value) in ("", "."):
        raise _Invalid(attribute.name, value, _FOLDER_ALLOWED)


def _optional_file(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if value is not None and (not isinstance(value, Path) or str(value) in ("", ".")):
        raise _Invalid(attribute.name, value, "must be empty (not used) or a file path")


def _auto_flag(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise _Invalid(attribute.name, value, "must be true, false or 'auto'")


def _public_key(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    allowed = "must be empty or a base64 ed25519 public key (32 bytes)"
    if not isinstance(value, str):
        raise _Invalid(attribute.name, value, allowed)
    if value and decode_public_key(value) is None:
        raise _Invalid(attribute.name, value, allowed)


def decode_public_key(text: str) -> bytes | None:
    """The 32 bytes of a base64 public key (padding optional), or None when it is not one."""
    cleaned = "".join(text.split())
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _tls_key_file(instance: Any, attribute: "attrs.Attribute[Any]", value: object) -> None:
    """A client certificate needs its key, and a key its certificate."""
    _optional_file(instance, attribute, value)
    if (value is None) != (instance.tls_cert_file is None):
        raise _Invalid(
            attribute.name,
            value,
            "tls_cert_file and tls_key_file go together: set both (mutual TLS) or neither",
        )


def _creds_file(instance: Any, attribute: "attrs.Attribute[Any]", value: object) -> None:
    """A ``.creds`` file carries the user's nkey seed: no other nkey goes with it."""
    _optional_file(instance, attribute, value)
    if value is None:
        return
    for other in ("nkey_seed_file", "nkey_from_ed25519_ssh_key_file"):
        if getattr(instance, other) is not None:
            raise _Invalid(
                attribute.name,
                value,
                f"{attribute.name} and {other} exclude each other: the .creds file carries "
                f"the user's nkey seed; leave {other} empty (it is "
                f"{str(getattr(instance, other))!r}) or {attribute.name} empty",
            )


def _nkey_ssh_key_file(instance: Any, attribute: "attrs.Attribute[Any]", value: object) -> None:
    """The nkey derived from an SSH key is the node's nkey: no seed file goes with it."""
    _optional_file(instance, attribute, value)
    if value is not None and instance.nkey_seed_file is not None:
        raise _Invalid(
            attribute.name,
            value,
            f"{attribute.name} and nkey_seed_file exclude each other: the nkey is derived "
            f"from the SSH key; leave nkey_seed_file empty (it is "
            f"{str(instance.nkey_seed_file)!r}) or {attribute.name} empty",
        )


def method_names_setting(text: str) -> frozenset[str]:
    """The method names of a comma-separated method list setting (``disabled_methods``)."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _method_list(_instance: object, attribute: "attrs.Attribute[Any]", value: object) -> None:
    if not isinstance(value, str) or not all(
        _METHOD_NAME.fullmatch(name) for name in method_names_setting(value)
    ):
        raise _Invalid(
            attribute.name,
            value,
            "must be empty or method names separated by commas (letters, digits, '_', '-'), "
            "e.g. 'REQCliCommand,REQTailFile'",
        )


def _acl_check(instance: Any, attribute: "attrs.Attribute[Any]", value: object) -> None:
    """ACLs name the nodes that signed a message: without signature checks, anyone could
    claim any name, so the switch needs enable_signature_check."""
    _flag(instance, attribute, value)
    if value and not instance.enable_signature_check:
        raise _Invalid(
            attribute.name,
            value,
            "it needs enable_signature_check = true: the ACL allows commands by the node "
            "that signed them, and without signature checks anyone can claim any node name",
        )


_METHOD_NAME: Final = re.compile(r"[A-Za-z0-9_\-]+")
