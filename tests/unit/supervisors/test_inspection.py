"""which_children, count_children and the JSON tree snapshot."""

import json
from typing import Any

import trio

from steward_otp.supervisors import (
    ChildKind,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    Restart,
    Strategy,
    Supervisor,
    current_child,
)

from .probes import Journal, running, settle, spec


def tree(journal: Journal) -> Supervisor:
    inbound = Supervisor(
        "inbound",
        [spec(journal, "REQCliCommand"), spec(journal, "REQHello", restart=Restart.TRANSIENT)],
        strategy=Strategy.ONE_FOR_ONE,
    )
    return Supervisor(
        "node",
        [spec(journal, "bridge"), inbound.child_spec()],
        strategy=Strategy.REST_FOR_ONE,
    )


async def test_which_children_has_the_otp_shape(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    node = tree(journal)
    async with running(node) as registry:
        bridge, inbound = node.which_children()
        assert (bridge.id, bridge.kind, bridge.restart, bridge.state) == (
            "bridge",
            ChildKind.WORKER,
            Restart.PERMANENT,
            ChildState.RUNNING,
        )
        assert bridge.handle is not None
        assert bridge.handle.path == "node/bridge"
        assert bridge.handle.inbox is registry.lookup("node/bridge")
        assert inbound.kind is ChildKind.SUPERVISOR
        assert isinstance(inbound.handle and inbound.handle.value, Supervisor)


async def test_count_children_counts_specs_active_and_kinds(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    node = tree(journal)
    async with running(node) as registry:
        counts = node.count_children()
        assert counts.to_dict() == {"specs": 2, "active": 2, "supervisors": 1, "workers": 1}
        await registry.send("node/inbound/REQHello", "exit")
        await settle()
        inbound = node.which_children()[1].handle
        assert inbound is not None
        assert inbound.value.count_children().to_dict() == {
            "specs": 2,
            "active": 1,
            "supervisors": 0,
            "workers": 2,
        }


async def test_snapshot_is_a_json_tree_with_paths_states_and_counts(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    node = tree(journal)
    async with running(node) as registry:
        await trio.sleep(10.0)
        await registry.send("node/inbound/REQCliCommand", "crash")
        await settle()
        await trio.sleep(2.5)
        data = json.loads(node.snapshot().to_json())
    assert data["path"] == "node"
    assert data["kind"] == "supervisor"
    assert data["strategy"] == "rest_for_one"
    assert data["restart"] is None
    assert data["state"] == "running"
    assert data["uptime"] == 12.5
    bridge, inbound = data["children"]
    assert bridge == {
        "path": "node/bridge",
        "id": "bridge",
        "kind": "worker",
        "strategy": None,
        "restart": "permanent",
        "state": "running",
        "restart_count": 0,
        "uptime": 12.5,
        "last_failure": None,
        "info": {},
        "children": [],
    }
    assert inbound["strategy"] == "one_for_one"
    cli = inbound["children"][0]
    assert cli["path"] == "node/inbound/REQCliCommand"
    assert cli["restart_count"] == 1
    assert cli["uptime"] == 2.5
    assert cli["last_failure"] == {
        "at": 10.0,
        "seconds_ago": 2.5,
        "reason": "Boom: REQCliCommand was told to crash",
    }


async def test_snapshot_shows_restarting_while_a_restart_is_in_progress(
    autojump_clock: trio.abc.Clock,
) -> None:
    journal = Journal()
    sup = Supervisor("sup", [spec(journal, "slow", start_delay=5.0)])
    async with running(sup) as registry:
        await registry.send("sup/slow", "crash")
        await trio.sleep(1.0)
        entry = sup.snapshot().children[0]
        assert (entry.state, entry.uptime, entry.restart_count) == ("restarting", None, 1)
        assert sup.which_children()[0].handle is None
        await trio.sleep(5.0)
        assert sup.snapshot().children[0].state == "running"


async def test_children_attach_live_info_by_dict_and_by_provider(
    autojump_clock: trio.abc.Clock,
) -> None:
    queue: list[int] = [1, 2, 3]

    async def publisher(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        me = current_child()
        me.info["connected"] = True
        me.info["peer"] = object()  # not JSON: shown as its repr
        me.info_provider = lambda: {"queue_depth": len(queue)}
        task_status.started()
        await trio.sleep_forever()

    async def broken(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        current_child().info_provider = lambda: {"x": 1 // 0}
        task_status.started()
        await trio.sleep_forever()

    sup = Supervisor("sup", [ChildSpec("pub", publisher), ChildSpec("broken", broken)])
    async with running(sup):
        pub, bad = sup.snapshot().children
        assert pub.info["connected"] is True
        assert pub.info["queue_depth"] == 3
        assert pub.info["peer"].startswith("<object object")
        queue.clear()
        assert sup.snapshot().children[0].info["queue_depth"] == 0
        assert bad.info == {"info_error": "ZeroDivisionError: integer division or modulo by zero"}
        json.dumps(sup.snapshot().to_dict())


async def test_snapshot_walk_and_find(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    node = tree(journal)
    async with running(node):
        snap = node.snapshot()
        assert [entry.path for entry in snap.walk()] == [
            "node",
            "node/bridge",
            "node/inbound",
            "node/inbound/REQCliCommand",
            "node/inbound/REQHello",
        ]
        found = snap.find("node/inbound/REQHello")
        assert found is not None and found.restart == "transient"
        assert snap.find("node/nothing") is None


async def test_snapshot_of_a_stopped_tree(autojump_clock: trio.abc.Clock) -> None:
    journal = Journal()
    node = tree(journal)
    async with running(node):
        pass
    snap = node.snapshot()
    assert snap.state == "stopped"
    assert [child.state for child in snap.children] == ["stopped", "stopped"]
    assert node.count_children().active == 0


async def test_dynamic_supervisor_snapshot(autojump_clock: trio.abc.Clock) -> None:
    async def pub(node: str, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        current_child().info["node"] = node
        task_status.started()
        await trio.sleep_forever()

    dyn = DynamicSupervisor("publishers", ChildSpec("publisher", pub))
    async with running(dyn):
        await dyn.start_child("ship1", "ship1")
        snap = dyn.snapshot()
    assert snap.strategy == "simple_one_for_one"
    assert [(c.path, c.info) for c in snap.children] == [("publishers/ship1", {"node": "ship1"})]
