"""Schedules: when the runs of a scheduled message start, and what they add up to."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.message import Message
from steward_otp.schedule import (
    Schedule,
    ScheduleError,
    legacy_http_schedule,
    message_schedule,
    schedule_outcome,
)


def test_runs_start_now_then_every_interval_while_total_has_not_passed() -> None:
    assert list(Schedule(2, 5).offsets()) == [0, 2, 4]
    assert list(Schedule(1, 3).offsets()) == [0, 1, 2]
    assert list(Schedule(10, 1).offsets()) == [0]


@given(st.integers(1, 500), st.integers(1, 5000))
def test_offsets_are_evenly_spaced_and_within_total(interval: int, total: int) -> None:
    schedule = Schedule(interval, total)
    offsets = list(schedule.offsets())
    assert offsets[0] == 0
    assert all(b - a == interval for a, b in pairwise(offsets))
    assert offsets[-1] < total <= offsets[-1] + interval
    assert len(offsets) == schedule.runs


def test_a_huge_total_is_not_materialised() -> None:
    offsets = Schedule(60, 5_000_000 * 60).offsets()
    assert [next(offsets) for _ in range(3)] == [0, 60, 120]


@pytest.mark.parametrize("values", [(0, 5), (5, 0), (-1, 5), (True, 5)])
def test_a_schedule_needs_positive_whole_seconds(values: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="must be a whole number of seconds"):
        Schedule(*values)


def test_a_message_without_schedule_runs_once() -> None:
    assert message_schedule(Message(method="REQCliCommand", method_args=["true"])) is None


def test_the_schedule_field_gives_the_schedule() -> None:
    assert message_schedule(Message(method="REQHttpGet", schedule=[2, 5])) == Schedule(2, 5)


@pytest.mark.parametrize(
    ("schedule", "field"), [([1, 2, 3], '"schedule"'), ([0, 5], r'"schedule\[0\]"')]
)
def test_a_bad_schedule_field_is_refused_naming_it(schedule: list[int], field: str) -> None:
    with pytest.raises(ScheduleError, match=field):
        message_schedule(Message(method="REQHttpGet", schedule=schedule))


def test_legacy_http_get_scheduled_takes_its_schedule_from_its_arguments() -> None:
    message = Message(method="REQHttpGetScheduled", method_args=["http://x/", "10", "2"])
    assert message_schedule(message) == Schedule(10, 120)
    explicit = Message(
        method="REQHttpGetScheduled", method_args=["http://x/", "10", "2"], schedule=[1, 3]
    )
    assert message_schedule(explicit) == Schedule(1, 3)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["http://x/"], '"methodArgs"'),
        (["http://x/", "ten", "2"], r'"methodArgs\[1\]"'),
        (["http://x/", "10", "0"], r'"methodArgs\[2\]"'),
        (["http://x/", "10", "-3"], r'"methodArgs\[2\]"'),
    ],
)
def test_bad_legacy_arguments_are_refused_naming_the_argument(args: list[str], field: str) -> None:
    with pytest.raises(ScheduleError, match=field) as caught:
        legacy_http_schedule(args)
    assert "intervalSeconds" in str(caught.value)


def test_outcome_is_ok_only_when_every_run_was() -> None:
    assert schedule_outcome([("ok", None), ("ok", None)]) == ("ok", None)
    outcome, reason = schedule_outcome([("ok", None), ("error", "boom"), ("timeout", "timeout")])
    assert outcome == "error"
    assert reason == "2 of 3 scheduled runs failed; last: timeout"
