"""The verify hooks a receiver runs on each message before storing it: signatures and ACLs
plug in here (:mod:`steward_otp.security.verify`).

Guarantees: a message is stored and run only when every hook allows it (the hooks run in
order, the first refusal decides; a hook that raises refuses that message); a refused
message is reported to the central error log as a warning and rejected by id with the
hook's reason wherever a rejection can go (an ACK-mode protocol-2 sender, or the broker for
a JetStream delivery; see :func:`steward_otp.delivery.receiver.refuse`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from steward_otp.delivery import receiver
from steward_otp.handlers.base import NodeServices
from steward_otp.message import Message

log = logging.getLogger(__name__)

VerifyHook = Callable[[Message], Awaitable[str | None]]
"""Returns None to allow the message, or the reason it is refused."""


async def verify_candidates(
    subject: str,
    candidates: list[receiver.Candidate],
    rejections: list[receiver.Rejection],
    verify_hooks: Sequence[VerifyHook],
    services: NodeServices,
) -> list[receiver.Candidate]:
    """The ``candidates`` every hook allows; each refused one is reported and its rejection
    (when its sender can take one) added to ``rejections``."""
    allowed: list[receiver.Candidate] = []
    for candidate in candidates:
        refusal: str | None = None
        for hook in verify_hooks:
            try:
                refusal = await hook(candidate.message)
            except Exception as exc:  # a hook's bug refuses this message, not the others
                log.exception("verify hook failed on message %s", candidate.message.id)
                refusal = f"could not be checked: the check failed ({type(exc).__name__})"
            if refusal is not None:
                break
        if refusal is None:
            allowed.append(candidate)
            continue
        services.report("warning", f"error: {subject}: {refusal}")
        rejection = receiver.refuse(candidate, refusal)
        if rejection is not None:
            rejections.append(rejection)
    return allowed
