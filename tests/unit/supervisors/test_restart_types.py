"""Permanent, transient and temporary children, alone and taken down with siblings."""

import pytest
import trio

from steward_otp.supervisors import Restart, Strategy, Supervisor

from .probes import Journal, running, settle, spec, states


@pytest.mark.parametrize("command", ["crash", "exit"])
async def test_permanent_child_is_restarted_after_any_exit(
    autojump_clock: trio.abc.Clock, command: str
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "p", restart=Restart.PERMANENT)])
    async with running(sup) as registry:
        await registry.send("sup/p", command)
        await settle()
        assert journal.of("start") == ["p", "p"]
        assert states(sup) == {"p": "running"}
        assert sup.snapshot().children[0].restart_count == 1


async def test_transient_child_is_restarted_after_a_crash(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "t", restart=Restart.TRANSIENT)])
    async with running(sup) as registry:
        await registry.send("sup/t", "crash")
        await settle()
        assert journal.of("start") == ["t", "t"]
        assert states(sup) == {"t": "running"}


async def test_transient_child_that_exits_normally_stays_stopped_with_its_spec_kept(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "t", restart=Restart.TRANSIENT)])
    async with running(sup) as registry:
        await registry.send("sup/t", "exit")
        await settle()
        assert journal.of("start") == ["t"]
        [info] = sup.which_children()
        assert (info.id, info.state.value, info.handle) == ("t", "stopped", None)
        assert "sup/t" not in registry


@pytest.mark.parametrize("command", ["crash", "exit"])
async def test_temporary_child_is_never_restarted_and_is_removed(
    autojump_clock: trio.abc.Clock, command: str
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "t", restart=Restart.TEMPORARY), spec(journal, "other")])
    async with running(sup) as registry:
        await registry.send("sup/t", command)
        await settle()
        assert journal.of("start") == ["t", "other"]
        assert states(sup) == {"other": "running"}


@pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE])
async def test_temporary_sibling_taken_down_by_a_restart_is_removed(
    autojump_clock: trio.abc.Clock, strategy: Strategy
) -> None:
    journal = Journal()
    sup = Supervisor(
        "sup",
        [spec(journal, "a"), spec(journal, "tmp", restart=Restart.TEMPORARY), spec(journal, "c")],
        strategy=strategy,
    )
    async with running(sup) as registry:
        journal.entries.clear()
        await registry.send("sup/a", "crash")
        await settle()
        assert journal.of("stop") == ["c", "tmp"]
        assert journal.of("start") == ["a", "c"]
        assert list(states(sup)) == ["a", "c"]


async def test_stopped_transient_sibling_is_started_again_by_a_group_restart_as_in_otp(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor(
        "sup",
        [spec(journal, "a"), spec(journal, "t", restart=Restart.TRANSIENT)],
        strategy=Strategy.ONE_FOR_ALL,
    )
    async with running(sup) as registry:
        await registry.send("sup/t", "exit")
        await settle()
        assert states(sup) == {"a": "running", "t": "stopped"}
        await registry.send("sup/a", "crash")
        await settle()
        assert states(sup) == {"a": "running", "t": "running"}
