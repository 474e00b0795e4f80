"""Hypothesis strategies for messages, shared by every test that needs one.

* :func:`messages` — messages an operator could submit: they pass ``validate_message``
  (known method, valid node names, reply-capable ``replyMethod``, sane ``schedule``), while
  every other field takes arbitrary values: any Unicode text, binary or text ``data`` (some
  large enough to be compressed), full 64-bit integers, nested ``previous_message``.
* :func:`any_messages` — anything the ``Message`` constructor accepts, including unknown
  methods and odd node names; for code that must carry any message (the wire codec).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from steward_otp.message import INT64_MAX, INT64_MIN, Message
from steward_otp.methods import BUILTIN_METHODS

__all__ = ["any_messages", "messages", "node_names", "payloads"]

_NODE_TOKEN = st.from_regex(r"[A-Za-z0-9_\-]{1,10}", fullmatch=True)

node_names = st.one_of(
    st.sampled_from(["central", "ship1", "ship2", "local", "ww.central", "errorCentral"]),
    st.lists(_NODE_TOKEN, min_size=1, max_size=3).map(".".join),
)
"""Valid node names (dots allowed, as in ``ww.central``)."""

texts = st.text(max_size=30)
"""Any Unicode text (hypothesis leaves out lone surrogates, which have no UTF-8 form)."""

path_texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
"""Text valid in ``directory`` and ``fileName`` at input: no control characters."""

integers = st.one_of(
    st.integers(-3, 130),
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([INT64_MIN, INT64_MAX, -1, 0, 1, 2**32, -(2**31)]),
)
"""Message integers: mostly small, sometimes anywhere in the signed 64-bit range."""

payloads = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    st.binary(min_size=1000, max_size=3000),
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(200, 800)).map(
        lambda pair: pair[0] * pair[1]  # compressible, often above the threshold
    ),
)
"""``data`` values: small binary, UTF-8 text, and large (compressible or not) blobs."""

_ROUTABLE = BUILTIN_METHODS.routable_names()
_REPLY = BUILTIN_METHODS.reply_method_names()
_SUB_METHODS = st.tuples(st.sampled_from(["REQSUBCopySrc", "REQSUBCopyDst"]), st.uuids()).map(
    lambda pair: f"{pair[0]}.{pair[1]}"
)


def _common_fields(previous: st.SearchStrategy[Message | None]) -> dict[str, Any]:
    """Strategies for the fields that validation does not restrict."""
    return {
        "id": st.one_of(st.just(""), texts),
        "data": payloads,
        "method_args": st.lists(texts, max_size=4),
        "arg_signature": st.one_of(st.just(b""), st.binary(min_size=64, max_size=64)),
        "reply_method_args": st.lists(texts, max_size=3),
        "is_reply": st.booleans(),
        "ack_timeout": integers,
        "retry_wait": integers,
        "is_sub_published_msg": st.booleans(),
        "retries": integers,
        "reply_ack_timeout": integers,
        "reply_retries": integers,
        "method_timeout": integers,
        "reply_method_timeout": integers,
        "directory": texts,
        "file_name": texts,
        "previous_message": previous,
        "relay_via_node": st.one_of(st.just(""), node_names),
        "relay_reply_method": st.one_of(st.just(""), st.sampled_from(_REPLY)),
        "relay_from_node": st.one_of(st.just(""), node_names),
        "relay_original_method": st.one_of(st.just(""), st.sampled_from(_ROUTABLE)),
        "jetstream": st.sampled_from([None, True, False]),
    }


def any_messages(max_depth: int = 2) -> st.SearchStrategy[Message]:
    """Any constructor-valid Message, ``previous_message`` nested up to ``max_depth``."""
    previous: st.SearchStrategy[Message | None] = (
        st.one_of(st.none(), any_messages(max_depth - 1)) if max_depth > 0 else st.none()
    )
    return st.builds(
        Message,
        to_node=texts,
        to_nodes=st.lists(texts, max_size=3),
        method=st.one_of(st.sampled_from(BUILTIN_METHODS.names()), texts),
        reply_method=texts,
        from_node=texts,
        schedule=st.lists(integers, max_size=3),
        **_common_fields(previous),
    )


@st.composite
def _destinations(draw: st.DrawFn) -> dict[str, Any]:
    to_node = draw(st.one_of(st.just(""), node_names))
    min_nodes = 0 if to_node else 1
    to_nodes = draw(st.lists(node_names, min_size=min_nodes, max_size=3))
    return {"to_node": to_node, "to_nodes": to_nodes}


def messages(max_depth: int = 2) -> st.SearchStrategy[Message]:
    """Messages that ``parse_messages`` accepts (``validate_message`` finds nothing)."""
    previous: st.SearchStrategy[Message | None] = (
        st.one_of(st.none(), any_messages(max_depth - 1)) if max_depth > 0 else st.none()
    )
    return st.builds(
        lambda destinations, **fields: Message(**destinations, **fields),
        _destinations(),
        method=st.one_of(st.sampled_from(_ROUTABLE), _SUB_METHODS),
        reply_method=st.one_of(st.just(""), st.sampled_from(_REPLY)),
        from_node=st.one_of(st.just(""), node_names),
        schedule=st.one_of(
            st.just(()), st.tuples(st.integers(1, INT64_MAX), st.integers(1, INT64_MAX))
        ),
        **{**_common_fields(previous), "directory": path_texts, "file_name": path_texts},
    )
