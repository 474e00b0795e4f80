"""The ACL handlers called directly (no node, no broker): central's answer to a node's
request, and what a node does with a delivery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steward_otp.config import Config
from steward_otp.handlers.acl import acl_handlers
from steward_otp.handlers.base import Handler, HandlerError
from steward_otp.message import Message
from steward_otp.methods import BUILTIN_METHODS
from steward_otp.security.acl import EMPTY_HASH, NodeAcl
from steward_otp.security.acl_service import AclService
from tests.unit.handlers.fakes import FakeServices, context, request


def service(home: Path, name: str, **settings: object) -> AclService:
    config = Config(home=home, node_name=name, **settings)  # type: ignore[arg-type]
    return AclService(config, verify_delivery=lambda message: None)


def handler_for(acl: AclService, method: str) -> Handler:
    return next(h for h in acl_handlers(acl) if h.name == method)


async def call(acl: AclService, message: Message, home: Path) -> bytes | None:
    services = FakeServices(home, node_name=acl.node_name)
    return await handler_for(acl, message.method)(context(services, message), message)


def test_there_are_stewards_thirteen_methods_with_the_tables_kinds(tmp_path: Path) -> None:
    handlers = acl_handlers(service(tmp_path, "central"))

    assert len(handlers) == 13
    for h in handlers:
        assert h.method.kind == BUILTIN_METHODS.require(h.name).kind, h.name
        assert h.method.reply_capable == BUILTIN_METHODS.require(h.name).reply_capable, h.name


async def test_central_answers_only_when_the_nodes_hash_differs(tmp_path: Path) -> None:
    central = service(tmp_path, "central", is_central_auth=True)
    central.authority().update(lambda s: s.add_command("ship1", "central", "uptime"))
    ask = request("REQAclRequestUpdate", to_node="central", from_node="ship1", data=EMPTY_HASH)

    answer = await call(central, ask, tmp_path)

    assert answer is not None
    acl, version = NodeAcl.from_json(answer, source="answer")
    assert (acl.to_dict(), version) == ({"central": ["uptime"]}, 1)
    again = request("REQAclRequestUpdate", to_node="central", from_node="ship1", data=acl.hash)
    assert await call(central, again, tmp_path) is None
    unknown = request("REQAclRequestUpdate", to_node="central", from_node="ship9", data=EMPTY_HASH)
    assert await call(central, unknown, tmp_path) is None  # nothing for ship9: all-zero hash


async def test_a_request_without_a_hash_names_the_field(tmp_path: Path) -> None:
    central = service(tmp_path, "central", is_central_auth=True)
    ask = request("REQAclRequestUpdate", to_node="central", data=b"short")

    with pytest.raises(HandlerError, match=r'field "data": expected the 32-byte hash'):
        await call(central, ask, tmp_path)


async def test_a_node_adopts_and_stores_its_acl(tmp_path: Path) -> None:
    ship1 = service(tmp_path, "ship1")
    acl = NodeAcl("ship1", {"central": ["uptime"]})

    await call(ship1, request("REQAclDeliverUpdate", data=acl.to_json(3).encode()), tmp_path)

    assert ship1.current() == acl and ship1.node_store.version == 3
    stored = json.loads((tmp_path / "etc" / "acl" / "node.json").read_text())
    assert stored["hash"] == acl.hash.hex()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            NodeAcl("ship2", {"central": ["ls"]}).to_json(1),
            "the ACL is for node 'ship2', not for ship1",
        ),
        ("[]", '"node", "acl" and "hash"'),
        ("{", "not valid JSON"),
    ],
)
async def test_a_wrong_delivery_is_refused_and_the_acl_in_use_stays(
    tmp_path: Path, data: str, error: str
) -> None:
    ship1 = service(tmp_path, "ship1")

    with pytest.raises(HandlerError, match=error.replace("(", r"\(")):
        await call(ship1, request("REQAclDeliverUpdate", data=data.encode()), tmp_path)
    assert ship1.current() is None
