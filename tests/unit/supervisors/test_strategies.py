"""One test per strategy: what a crash of the middle child ``b`` of ``a, b, c`` takes down."""

import trio

from steward_otp.supervisors import Strategy, Supervisor

from .probes import Journal, running, settle, spec, states


def abc(journal: Journal, strategy: Strategy) -> Supervisor:
    return Supervisor("sup", [spec(journal, n) for n in "abc"], strategy=strategy)


async def test_one_for_one_restarts_only_the_crashed_child(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    sup = abc(journal, Strategy.ONE_FOR_ONE)
    async with running(sup) as registry:
        before = {info.id: info.handle for info in sup.which_children()}
        journal.entries.clear()
        await registry.send("sup/b", "crash")
        await settle()
        assert journal.entries == ["crash:b", "start:b"]
        after = {info.id: info.handle for info in sup.which_children()}
        assert after["a"] is before["a"] and after["c"] is before["c"]
        assert after["b"] is not before["b"]
        assert states(sup) == {"a": "running", "b": "running", "c": "running"}


async def test_one_for_all_stops_the_others_in_reverse_then_starts_all_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = abc(journal, Strategy.ONE_FOR_ALL)
    async with running(sup) as registry:
        journal.entries.clear()
        await registry.send("sup/b", "crash")
        await settle()
        assert journal.entries == [
            "crash:b",
            "stop:c",
            "stop:a",
            "start:a",
            "start:b",
            "start:c",
        ]
        assert [c.restart_count for c in sup.snapshot().children] == [1, 1, 1]


async def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = abc(journal, Strategy.REST_FOR_ONE)
    async with running(sup) as registry:
        journal.entries.clear()
        await registry.send("sup/b", "crash")
        await settle()
        assert journal.entries == ["crash:b", "stop:c", "start:b", "start:c"]
        assert [c.restart_count for c in sup.snapshot().children] == [0, 1, 1]


async def test_rest_for_one_crash_of_the_last_child_touches_nobody_else(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = abc(journal, Strategy.REST_FOR_ONE)
    async with running(sup) as registry:
        journal.entries.clear()
        await registry.send("sup/c", "crash")
        await settle()
        assert journal.entries == ["crash:c", "start:c"]
