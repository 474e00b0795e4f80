import pytest
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.supervisors import RestartIntensity, Strategy
from steward_otp.supervisors.strategy import restart_group


def test_intensity_zero_gives_up_on_the_first_restart() -> None:
    assert RestartIntensity(0, 5.0).record(0.0) is False


def test_more_than_intensity_restarts_within_period_give_up() -> None:
    intensity = RestartIntensity(2, 5.0)
    assert intensity.record(0.0)
    assert intensity.record(1.0)
    assert not intensity.record(2.0)


def test_restarts_spread_beyond_the_period_never_give_up() -> None:
    intensity = RestartIntensity(1, 5.0)
    assert all(intensity.record(t * 5.5) for t in range(100))


def test_a_restart_exactly_period_old_still_counts_as_in_otp() -> None:
    intensity = RestartIntensity(1, 5.0)
    assert intensity.record(0.0)
    assert not intensity.record(5.0)


def test_reset_forgets_history() -> None:
    intensity = RestartIntensity(1, 5.0)
    intensity.record(0.0)
    intensity.reset()
    assert intensity.recent(0.0) == 0
    assert intensity.record(0.0)


@pytest.mark.parametrize(("intensity", "period"), [(-1, 5.0), (1, 0.0), (1, -1.0), (1.5, 5.0)])
def test_invalid_limits_are_rejected(intensity: object, period: object) -> None:
    with pytest.raises(ValueError, match=r"intensity|period"):
        RestartIntensity(intensity, period)  # type: ignore[arg-type]


@given(
    intensity=st.integers(0, 5),
    period=st.sampled_from([0.5, 1.0, 5.0, 10.0]),
    gaps=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0, 6.0, 11.0]), max_size=30),
)
def test_record_matches_the_definition(intensity: int, period: float, gaps: list[float]) -> None:
    """record() says yes exactly when at most `intensity` restarts, this one included, lie
    in the closed window [now - period, now] (restarts after a "no" are still recorded)."""
    limiter = RestartIntensity(intensity, period)
    times: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
        in_window = sum(1 for t in times if now - t <= period)
        assert limiter.record(now) is (in_window <= intensity)


def test_restart_group_per_strategy() -> None:
    children = ["a", "b", "c", "d"]
    assert restart_group(Strategy.ONE_FOR_ONE, children, 1) == ["b"]
    assert restart_group(Strategy.ONE_FOR_ALL, children, 1) == children
    assert restart_group(Strategy.REST_FOR_ONE, children, 1) == ["b", "c", "d"]
    with pytest.raises(IndexError):
        restart_group(Strategy.ONE_FOR_ONE, children, 4)
