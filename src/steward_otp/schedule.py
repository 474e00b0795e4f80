"""Scheduled runs: which message runs repeatedly, when, and what its runs add up to. Pure.

A message with ``schedule: [interval, total]`` runs once when it arrives, then every
``interval`` seconds while fewer than ``total`` seconds have passed since the first run:
``[2, 5]`` runs at 0, 2 and 4 s. Each run is independent: it has its own ``methodTimeout``
and sends its own replies (see ``steward_otp.inbound.handler_runs.HandlerRunner.execute``).

The deprecated ``REQHttpGetScheduled`` keeps Steward's argument form
``[url, intervalSeconds, totalMinutes]``; it means ``REQHttpGet`` of ``url`` with the
schedule ``[intervalSeconds, totalMinutes * 60]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import attrs

from steward_otp.message import Message

LEGACY_SCHEDULED_METHOD = "REQHttpGetScheduled"
"""The method whose arguments, not its ``schedule`` field, carry the schedule."""

SCHEDULE_ALLOWED = "[intervalSeconds, totalSeconds], both at least 1, or no schedule"
LEGACY_ARGS_ALLOWED = (
    '["url", "intervalSeconds", "totalMinutes"], e.g. ["http://host/x", "60", "5"]'
)


class ScheduleError(ValueError):
    """A schedule (or the arguments that stand for one) that cannot be followed."""


def _positive(value: int, name: str) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a whole number of seconds >= 1, got {value!r}")
    return value


@attrs.frozen
class Schedule:
    """Run now, then every ``interval`` seconds while less than ``total`` seconds have passed.

    Both are whole seconds, at least 1 (``ValueError`` otherwise).
    """

    interval: int = attrs.field(validator=lambda _i, _a, v: _positive(v, "interval"))
    total: int = attrs.field(validator=lambda _i, _a, v: _positive(v, "total"))

    def offsets(self) -> Iterator[int]:
        """Seconds after the first run at which each run starts: 0, interval, ... < total."""
        offset = 0
        while offset < self.total:
            yield offset
            offset += self.interval

    @property
    def runs(self) -> int:
        """How many runs the schedule makes."""
        return -(-self.total // self.interval)


_MAX_DIGITS = 18
"""Digits of the longest number read from arguments (it fits an int64, like a schedule)."""


def _whole_number(value: str, index: int) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS or int(text) < 1:
        shown = value if len(value) <= 24 else value[:24] + "..."
        raise ScheduleError(
            f'field "methodArgs[{index}]": value {shown!r} is not a whole number from 1 to '
            f"{'9' * _MAX_DIGITS}; allowed: {LEGACY_ARGS_ALLOWED}"
        )
    return int(text)


def legacy_http_schedule(args: Sequence[str]) -> Schedule:
    """The schedule ``REQHttpGetScheduled`` arguments ``[url, intervalSeconds, totalMinutes]``
    stand for; :class:`ScheduleError` naming the argument when they do not fit."""
    if len(args) < 3:
        raise ScheduleError(
            f'field "methodArgs": value {list(args)!r} has {len(args)} of the 3 arguments; '
            f"allowed: {LEGACY_ARGS_ALLOWED}"
        )
    interval = _whole_number(args[1], 1)
    minutes = _whole_number(args[2], 2)
    return Schedule(interval, minutes * 60)


def message_schedule(message: Message) -> Schedule | None:
    """The schedule ``message`` runs on, or None to run it once.

    A ``schedule`` field wins; a ``REQHttpGetScheduled`` without one takes it from its
    arguments. Raises :class:`ScheduleError`, naming the field, for a schedule that is not
    two positive numbers (input validation rejects those, but a message can come from
    anywhere).
    """
    if message.schedule:
        if len(message.schedule) != 2:
            raise ScheduleError(
                f'field "schedule": value {list(message.schedule)!r} does not have exactly '
                f"2 elements; allowed: {SCHEDULE_ALLOWED}"
            )
        for i, seconds in enumerate(message.schedule):
            if seconds < 1:
                raise ScheduleError(
                    f'field "schedule[{i}]": value {seconds} is not a positive number of '
                    f"seconds; allowed: {SCHEDULE_ALLOWED}"
                )
        return Schedule(*message.schedule)
    if message.method == LEGACY_SCHEDULED_METHOD:
        return legacy_http_schedule(message.method_args)
    return None


def schedule_outcome(outcomes: Sequence[tuple[str, str | None]]) -> tuple[str, str | None]:
    """What the runs of one schedule add up to, as the inbound store's (outcome, reason).

    ``"ok"`` when every run was; otherwise ``"error"`` with how many failed and the last
    reason.
    """
    failed = [(outcome, reason) for outcome, reason in outcomes if outcome != "ok"]
    if not failed:
        return "ok", None
    outcome, reason = failed[-1]
    return "error", (
        f"{len(failed)} of {len(outcomes)} scheduled runs failed; last: {reason or outcome}"
    )


__all__ = [
    "LEGACY_SCHEDULED_METHOD",
    "Schedule",
    "ScheduleError",
    "legacy_http_schedule",
    "message_schedule",
    "schedule_outcome",
]
