"""docs/architecture.md describes the tree a node really runs.

The process tree drawn under "The tree of one node" is compared with the live snapshot of a
node that has every optional process turned on: a process added, renamed or removed in the
code without the document (or the other way round) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from steward_otp.node import Node
from steward_otp.supervisors import ProcessSnapshot
from tests.conftest import free_loopback_port
from tests.nodes import node_config

pytestmark = pytest.mark.integration

DOC = Path(__file__).parents[2] / "docs" / "architecture.md"
_ENTRY = re.compile(r"^(?P<indent>(?:│   |    )*)[├└]── (?P<name>[\w.-]+)\s*(?P<note>.*)$")


def documented_tree() -> dict[str, str]:
    """Every process drawn in the document's tree: path (``node/outbound/router``) → note."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## The tree of one node", 1)[1]
    block = section.split("```", 2)[1]
    lines = block.strip("\n").splitlines()
    assert lines[0].split()[0] == "node", "the tree starts at the root 'node'"
    tree: dict[str, str] = {"node": lines[0]}
    parents = ["node"]
    for line in lines[1:]:
        match = _ENTRY.match(line)
        assert match is not None, f"not a tree line: {line!r}"
        depth = len(match["indent"]) // 4 + 1
        parents = parents[:depth]
        path = "/".join([*parents, match["name"]])
        tree[path] = match["note"]
        parents.append(match["name"])
    return tree


def live_paths(snapshot: ProcessSnapshot, documented: dict[str, str]) -> set[str]:
    """The live processes at the places the document draws: every documented supervisor's
    children, except those started on demand (one per destination or per method)."""
    found = {snapshot.path}
    for child in snapshot.children:
        found.add(child.path)
        if child.path in documented and any(p.startswith(child.path + "/") for p in documented):
            found |= live_paths(child, documented)
    return found


async def test_the_documented_tree_is_the_tree_a_node_runs(tmp_path: Path) -> None:
    documented = documented_tree()
    config = node_config(
        tmp_path,
        "central",
        "",  # the embedded broker, so that 'broker' runs too
        embedded_broker_port=free_loopback_port(),
        prom_host_and_port=f"127.0.0.1:{free_loopback_port()}",
        expose_data_folder=f"127.0.0.1:{free_loopback_port()}",
        web_listener=f"127.0.0.1:{free_loopback_port()}",
        delivery="jetstream",
    )
    async with Node(config) as node:
        live = live_paths(node.snapshot(), documented)

    assert sorted(set(documented) - live) == [], "drawn in docs/architecture.md, not running"
    assert sorted(live - set(documented)) == [], "running, not drawn in docs/architecture.md"
