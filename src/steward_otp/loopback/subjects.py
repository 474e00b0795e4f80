"""NATS subjects for the loopback broker: which subjects and patterns are valid, which match.

A subject is dot-separated, non-empty tokens without whitespace. In a subscription pattern
``*`` matches exactly one token and a final ``>`` one or more trailing tokens; only whole
tokens are wildcards (``a*`` is literal). Everything here is pure and works on strings or
their token tuples.
"""

from __future__ import annotations


def split_subject(subject: str) -> tuple[str, ...]:
    """The tokens of ``subject`` (or of a pattern), unchecked."""
    return tuple(subject.split("."))


def _tokens_ok(tokens: tuple[str, ...]) -> bool:
    return all(token and not any(c.isspace() for c in token) for token in tokens)


def is_valid_subject(subject: str) -> bool:
    """True when ``subject`` can be published on: non-empty tokens, no whitespace, no wildcard."""
    tokens = split_subject(subject)
    return _tokens_ok(tokens) and "*" not in tokens and ">" not in tokens


def is_valid_pattern(pattern: str) -> bool:
    """True when ``pattern`` can be subscribed to: a subject whose tokens may be ``*``, and
    whose last token may be ``>``."""
    tokens = split_subject(pattern)
    return _tokens_ok(tokens) and ">" not in tokens[:-1]


def pattern_tokens(pattern: str) -> tuple[str, ...]:
    """The tokens of a subscription pattern; ValueError when it is not valid."""
    if not is_valid_pattern(pattern):
        raise ValueError(f"invalid subject pattern {pattern!r}")
    return split_subject(pattern)


def tokens_match(pattern: tuple[str, ...], subject: tuple[str, ...]) -> bool:
    """True when the pattern tokens match the subject tokens (both already split)."""
    last = len(pattern) - 1
    for i, token in enumerate(pattern):
        if token == ">" and i == last:
            return len(subject) > i
        if i >= len(subject) or (token != "*" and token != subject[i]):
            return False
    return len(subject) == len(pattern)


def subject_matches(pattern: str, subject: str) -> bool:
    """True when a subscription on ``pattern`` receives a message published on ``subject``.

    NATS rules: tokens are compared one by one; ``*`` matches any one token, a final ``>`` one
    or more remaining tokens; only whole tokens are wildcards (``a*`` is literal). Raises
    ValueError for an invalid pattern; an invalid subject matches nothing.
    """
    tokens = pattern_tokens(pattern)
    return is_valid_subject(subject) and tokens_match(tokens, split_subject(subject))
