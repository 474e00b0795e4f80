import math

import pytest
import trio

from steward_otp.supervisors import BRUTAL_KILL, ChildKind, ChildSpec, Restart, current_child


async def idle(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


def test_worker_defaults_to_permanent_with_five_seconds_of_grace() -> None:
    spec = ChildSpec("w", idle)
    assert spec.restart is Restart.PERMANENT
    assert spec.kind is ChildKind.WORKER
    assert spec.shutdown == 5.0
    assert spec.grace == 5.0


def test_supervisor_child_defaults_to_infinite_grace() -> None:
    spec = ChildSpec("s", idle, kind=ChildKind.SUPERVISOR)
    assert spec.shutdown == math.inf


def test_brutal_kill_has_no_grace_and_integers_become_seconds() -> None:
    assert ChildSpec("w", idle, shutdown=BRUTAL_KILL).grace == 0.0
    assert ChildSpec("w", idle, shutdown=2).shutdown == 2.0


@pytest.mark.parametrize("bad_id", ["", "a/b", 3])
def test_id_must_be_a_non_empty_string_without_slash(bad_id: object) -> None:
    with pytest.raises(ValueError, match=r"ChildSpec\.id must be a non-empty string"):
        ChildSpec(bad_id, idle)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, "soon", True, math.nan])
def test_shutdown_must_be_non_negative_seconds_or_brutal_kill(bad: object) -> None:
    with pytest.raises(ValueError, match=r"ChildSpec\.shutdown"):
        ChildSpec("w", idle, shutdown=bad)


def test_restart_and_kind_must_be_their_enums() -> None:
    with pytest.raises(TypeError):
        ChildSpec("w", idle, restart="permanent")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ChildSpec("w", idle, kind="worker")  # type: ignore[arg-type]


def test_start_must_be_callable() -> None:
    with pytest.raises(TypeError):
        ChildSpec("w", "not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("restart", "after_crash", "after_normal_exit"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.TRANSIENT, True, False),
        (Restart.TEMPORARY, False, False),
    ],
)
def test_restart_types_follow_otp(
    restart: Restart, after_crash: bool, after_normal_exit: bool
) -> None:
    assert restart.restarts_after(crashed=True) is after_crash
    assert restart.restarts_after(crashed=False) is after_normal_exit


async def test_with_arguments_passes_them_before_task_status() -> None:
    seen: list[tuple[object, ...]] = []

    async def start(*args: object, task_status: trio.TaskStatus[str]) -> None:
        seen.append(args)
        task_status.started("ready")

    template = ChildSpec("template", start, restart=Restart.TRANSIENT)
    child = template.with_arguments("ship1", "ship1", 42)
    assert child.id == "ship1"
    assert child.restart is Restart.TRANSIENT
    async with trio.open_nursery() as nursery:
        assert await nursery.start(child.start) == "ready"
    assert seen == [("ship1", 42)]


def test_current_child_outside_a_supervisor_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="outside a supervised child"):
        current_child()
