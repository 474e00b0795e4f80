"""What inputs send back, bounded: however bad a document, its answer stays small.

The socket inputs answer one JSON line per message (:class:`~steward_otp.inputs.intake.Answer`).
Here the answer is bounded: every *accepted* message keeps its line (the client needs its
id), rejected ones are listed up to :data:`MAX_REJECTED_ANSWERS` and the rest summarised in
one last line; an empty document gets one line saying so. The error-log lines an input
reports for one document are bounded the same way (:func:`bounded_reports`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from steward_otp.inputs.intake import Answer, document_rejection

__all__ = [
    "MAX_REJECTED_ANSWERS",
    "MAX_REPORTS_PER_DOCUMENT",
    "answer_lines",
    "bounded_answers",
    "bounded_reports",
    "empty_document",
    "rejection_line",
]

MAX_REJECTED_ANSWERS: Final = 100
"""Rejected messages listed one by one in an answer; the rest are counted in a summary."""

MAX_REPORTS_PER_DOCUMENT: Final = 10
"""Error-log lines one document may cause; the rest are counted in one more line."""

_JSON: Final = json.JSONEncoder(ensure_ascii=False)
"""``json.dumps(..., ensure_ascii=False)``, made once (each such call makes an encoder)."""


def empty_document() -> dict[str, Any]:
    """The answer to a document that holds no message."""
    return document_rejection("document: holds no messages", "a list of messages or one message")


def rejection_line(error: str, allowed: str | None = None) -> str:
    """One answer line about the whole document (or the connection), newline-terminated."""
    return json.dumps(document_rejection(error, allowed), ensure_ascii=False) + "\n"


def bounded_answers(
    answers: Sequence[Answer], limit: int = MAX_REJECTED_ANSWERS
) -> list[dict[str, Any]]:
    """The answers as dicts: all accepted ones, the first ``limit`` rejected ones, and one
    summary (``index`` None) counting the rejected ones left out; ``[empty_document()]``
    when there are none at all. Order is kept."""
    if not answers:
        return [empty_document()]
    shown: list[dict[str, Any]] = []
    rejected = 0
    for answer in answers:
        if not answer.accepted:
            rejected += 1
            if rejected > limit:
                continue
        shown.append(answer.to_dict())
    if rejected > limit:
        shown.append(
            document_rejection(
                f"document: {rejected - limit} more rejected messages are not listed "
                f"({rejected} rejected in all; the first {limit} are above)",
                "fix the messages listed above and send the document again",
            )
        )
    return shown


def answer_lines(answers: Sequence[Answer], limit: int = MAX_REJECTED_ANSWERS) -> bytes:
    """:func:`bounded_answers` as the socket inputs send them: one JSON line each."""
    return "".join(_JSON.encode(item) + "\n" for item in bounded_answers(answers, limit)).encode()


def bounded_reports(
    texts: Sequence[str], source: str, limit: int = MAX_REPORTS_PER_DOCUMENT
) -> list[str]:
    """The first ``limit`` of ``texts``, then one line counting the others (if any)."""
    if len(texts) <= limit:
        return list(texts)
    more = len(texts) - limit
    return [
        *texts[:limit],
        f"error: {source}: {more} more rejected messages in the same document not reported",
    ]
