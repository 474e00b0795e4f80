"""expose_data_folder: a running node serves its data folder read-only over HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from steward_otp.asgi_serve import ServeError
from steward_otp.data_folder_view import DataFolderView
from steward_otp.node import Node
from tests.conftest import NatsServer, free_loopback_port
from tests.nodes import node_config

pytestmark = pytest.mark.integration


@asynccontextmanager
async def serving_node(tmp_path: Path, url: str) -> AsyncIterator[tuple[Node, str]]:
    """A node with expose_data_folder on a free loopback port, and its base URL."""
    address = f"127.0.0.1:{free_loopback_port()}"
    node = Node(node_config(tmp_path, "ship1", url, expose_data_folder=address))
    async with node:
        yield node, f"http://{address}"


def fill(data: Path, outside: Path) -> None:
    (data / "out" / "ship1").mkdir(parents=True)
    (data / "out" / "ship1" / "uptime.txt").write_text("up 3 days\n", encoding="utf-8")
    (data / "a b.txt").write_text("spaced\n", encoding="utf-8")
    outside.write_text("secret\n", encoding="utf-8")
    (data / "leak").symlink_to(outside)
    (data / "leakdir").symlink_to(outside.parent)


async def test_files_and_listings_are_served_and_nothing_outside(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with serving_node(tmp_path / "home", nats_server.url) as (node, base):
        fill(node.config.data_dir, tmp_path / "secret.txt")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            got = await client.get("/out/ship1/uptime.txt")
            assert (got.status_code, got.text) == (200, "up 3 days\n")
            assert "last-modified" in got.headers

            part = await client.get("/out/ship1/uptime.txt", headers={"Range": "bytes=3-6"})
            assert (part.status_code, part.text) == (206, "3 da")

            assert (await client.get("/a%20b.txt")).text == "spaced\n"

            listing = await client.get("/")
            assert listing.status_code == 200
            assert '<a href="out/">out/</a>' in listing.text
            assert '<a href="a%20b.txt">a b.txt</a>' in listing.text
            assert "secret" not in listing.text  # the links out are not listed as reachable

            rows = (await client.get("/out/ship1/", headers={"Accept": "application/json"})).json()
            assert [(r["name"], r["folder"], r["size"]) for r in rows] == [
                ("uptime.txt", False, 10)
            ]

            moved = await client.get("/out")
            assert (moved.status_code, moved.headers["location"]) == (301, "/out/")

            for path in (
                "/leak",
                "/leakdir/secret.txt",
                "/../secret.txt",
                "/%2e%2e/secret.txt",
                "/out/%2e%2e/%2e%2e/secret.txt",
                "/missing.txt",
            ):
                refused = await client.get(path)
                assert refused.status_code == 404, path
                assert "secret" not in refused.text

            for method in ("POST", "PUT", "DELETE"):
                assert (await client.request(method, "/out/ship1/uptime.txt")).status_code == 405
            assert (await client.head("/out/ship1/uptime.txt")).status_code == 200

        snapshot = node.snapshot()
        view = next(c for c in snapshot.children if c.id == "data_folder")
        assert view.info["folder"] == str(node.config.data_dir)
    assert (node.config.data_dir / "out" / "ship1" / "uptime.txt").read_text() == "up 3 days\n"


async def test_a_node_without_the_setting_serves_no_data_folder(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async with Node(node_config(tmp_path, "ship1", nats_server.url)) as node:
        assert "data_folder" not in [c.id for c in node.snapshot().children]


async def test_an_address_in_use_fails_the_start_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        view = DataFolderView(tmp_path, f"127.0.0.1:{port}")
        with pytest.RaisesGroup(
            pytest.RaisesExc(ServeError, match=rf"expose_data_folder = '127.0.0.1:{port}'"),
            flatten_subgroups=True,
        ):
            async with trio.open_nursery() as nursery:
                await nursery.start(view.run)
