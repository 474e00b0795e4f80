"""Supervisor's runtime child management: start_child, terminate_child, restart_child,
delete_child (as OTP's supervisor module)."""

import pytest
import trio

from steward_otp.supervisors import (
    ChildRunning,
    ChildSpec,
    ChildStartError,
    DuplicateChild,
    NotRunning,
    Restart,
    Strategy,
    Supervisor,
    UnknownChild,
)

from .probes import Journal, running, settle, spec, states


async def test_start_child_appends_and_starts(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a")], strategy=Strategy.REST_FOR_ONE)
    async with running(sup) as registry:
        inbox = await sup.start_child(spec(journal, "b"))
        assert registry.lookup("sup/b") is inbox
        assert list(states(sup)) == ["a", "b"]
        with pytest.raises(DuplicateChild, match="already has a child 'b'"):
            await sup.start_child(spec(journal, "b"))
        journal.entries.clear()
        await registry.send("sup/a", "crash")
        await settle()
        assert journal.entries == ["crash:a", "stop:b", "start:a", "start:b"]


async def test_start_child_failure_is_reported_and_not_added(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", intensity=0)
    async with running(sup):
        with pytest.raises(ChildStartError, match="'sup/bad' failed to start: Boom"):
            await sup.start_child(spec(journal, "bad", fail_start=True))
        assert sup.which_children() == []
        assert sup.running


async def test_terminate_restart_and_delete_child(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a"), spec(journal, "b")])
    async with running(sup) as registry:
        await sup.terminate_child("a")
        assert states(sup) == {"a": "stopped", "b": "running"}
        assert "sup/a" not in registry
        await sup.terminate_child("a")  # already stopped: nothing to do
        with pytest.raises(ChildRunning, match="'sup/b' is running"):
            await sup.delete_child("b")
        await sup.restart_child("a")
        assert states(sup) == {"a": "running", "b": "running"}
        with pytest.raises(ChildRunning):
            await sup.restart_child("a")
        await sup.terminate_child("a")
        await sup.delete_child("a")
        assert list(states(sup)) == ["b"]
        with pytest.raises(UnknownChild, match="has no child 'a'"):
            sup.get_childspec("a")
        assert sup.get_childspec("b").id == "b"


async def test_terminating_a_temporary_child_removes_it(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "t", restart=Restart.TEMPORARY)])
    async with running(sup):
        await sup.terminate_child("t")
        assert sup.which_children() == []


async def test_operations_need_a_running_supervisor() -> None:
    sup = Supervisor("sup")
    with pytest.raises(NotRunning, match="supervisor 'sup' is not running"):
        await sup.terminate_child("a")


async def test_a_restarted_supervisor_starts_from_its_specs_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "a")])
    async with running(sup):
        await sup.start_child(spec(journal, "extra"))
    async with running(sup):
        assert list(states(sup)) == ["a"]


def test_duplicate_ids_and_bad_settings_are_rejected() -> None:
    journal = Journal()
    with pytest.raises(DuplicateChild):
        Supervisor("sup", [spec(journal, "a"), spec(journal, "a")])
    with pytest.raises(ValueError, match="supervisor id"):
        Supervisor("a/b")
    with pytest.raises(ValueError, match="intensity"):
        Supervisor("sup", intensity=-1)
    with pytest.raises(ValueError, match="period"):
        Supervisor("sup", period=0)
    with pytest.raises(ValueError, match="strategy"):
        Supervisor("sup", strategy="one_for_one")  # type: ignore[arg-type]


def test_child_spec_of_a_supervisor() -> None:
    sup = Supervisor("inner")
    child = sup.child_spec(restart=Restart.TRANSIENT)
    assert isinstance(child, ChildSpec)
    assert (child.id, child.kind.value, child.restart, child.grace) == (
        "inner",
        "supervisor",
        Restart.TRANSIENT,
        float("inf"),
    )
