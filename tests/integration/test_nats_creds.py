"""``nats_creds_file``: JWT (operator mode) authentication against a real nats-server.

The server trusts a throw-away operator and has its account preloaded (memory resolver);
the users' ``.creds`` files are minted by :mod:`tests.nats_jwt`. Nodes with creds of that
account exchange a command and its reply; a node without creds, with creds of an account
the server does not know, or with a seed that does not match its JWT is refused and says
what to check. A creds file together with another nkey setting, or one that cannot be read,
stops the start naming the setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from steward_otp.config import ConfigError
from steward_otp.node import Node
from steward_otp.transport import ConnectionState
from tests.conftest import NatsServer
from tests.nats_jwt import Account, Operator, User, decode_claims, server_config
from tests.nodes import echo_command, file_text, node_config, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def operator_server(tmp_path: Path) -> Iterator[tuple[NatsServer, Account]]:
    """nats-server in operator mode, and the one account it knows."""
    operator = Operator.create()
    account = operator.account("fleet")
    config = tmp_path / "nats-operator.conf"
    config.write_text(server_config(operator, [account]))
    server = NatsServer(tmp_path / "nats", config_file=config)
    server.start()
    yield server, account
    server.stop()


def test_the_minted_tokens_chain_operator_account_user() -> None:
    operator = Operator.create()
    account = operator.account("fleet")
    user = account.user("ship1")

    own = decode_claims(operator.jwt)
    assert own["iss"] == own["sub"] == operator.identity.public_key
    assert decode_claims(account.jwt)["iss"] == operator.identity.public_key
    claims = decode_claims(user.jwt)
    assert claims["iss"] == account.identity.public_key
    assert claims["sub"] == user.identity.public_key and claims["sub"].startswith("U")
    assert claims["nats"]["type"] == "user" and claims["nats"]["version"] == 2


async def test_nodes_with_creds_files_exchange_a_command_and_its_reply(
    operator_server: tuple[NatsServer, Account], tmp_path: Path
) -> None:
    server, account = operator_server

    def node(name: str) -> Node:
        creds = account.user(name).write_creds(tmp_path / "creds" / f"{name}.creds")
        return Node(node_config(tmp_path, name, server.url, nats_creds_file=creds))

    central, ship1 = node("central"), node("ship1")
    result = tmp_path / "central" / "data" / "jwt" / "ship1" / "out.txt"
    async with central, ship1:
        await central.submit([echo_command("over jwt", "jwt")])
        await wait_for(lambda: file_text(result) == "over jwt\n")


@pytest.mark.parametrize("creds", ["none", "unknown account", "seed of another user"])
async def test_a_node_without_valid_creds_is_refused_and_says_so(
    operator_server: tuple[NatsServer, Account],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    creds: str,
) -> None:
    server, account = operator_server
    settings: dict[str, object] = {}
    if creds == "unknown account":
        stranger = Operator.create().account("elsewhere").user("ship9")
        settings["nats_creds_file"] = stranger.write_creds(tmp_path / "ship9.creds")
    elif creds == "seed of another user":
        user, other = account.user("ship9"), account.user("ship10")
        forged = User(other.identity, user.jwt)  # ship9's JWT, ship10's seed
        settings["nats_creds_file"] = forged.write_creds(tmp_path / "ship9.creds")
    node = Node(node_config(tmp_path, "ship9", server.url, **settings))
    async with node:
        await wait_for(lambda: f"the broker {server.url} refused" in caplog.text)
        assert node.bridge.state is ConnectionState.CONNECTING
    assert "Authorization Violation" in caplog.text
    assert "check nkey_seed_file or nats_creds_file" in caplog.text


@pytest.mark.parametrize("other", ["nkey_seed_file", "nkey_from_ed25519_ssh_key_file"])
def test_creds_and_another_nkey_are_refused_naming_both(tmp_path: Path, other: str) -> None:
    with pytest.raises(ConfigError) as caught:
        node_config(
            tmp_path,
            "ship1",
            "nats://127.0.0.1:4222",
            nats_creds_file=Path("ship1.creds"),
            **{other: Path("key")},
        )
    assert caught.value.field == "nats_creds_file"
    assert f"nats_creds_file and {other} exclude each other" in str(caught.value)


def test_a_missing_creds_file_stops_the_start_naming_setting_and_path(tmp_path: Path) -> None:
    config = node_config(tmp_path, "ship1", "nats://127.0.0.1:4222", nats_creds_file="gone.creds")

    with pytest.raises(ConfigError, match="cannot read it: No such file") as caught:
        Node(config)
    assert caught.value.field == "nats_creds_file"
    assert str(tmp_path / "ship1" / "gone.creds") in str(caught.value)


def test_a_file_nats_py_cannot_read_as_creds_stops_the_start(tmp_path: Path) -> None:
    user = Operator.create().account("fleet").user("ship1")
    seed_only = tmp_path / "seed.txt"
    seed_only.write_text(user.identity.seed + "\n")
    config = node_config(tmp_path, "ship1", "nats://127.0.0.1:4222", nats_creds_file=seed_only)

    with pytest.raises(ConfigError, match="lacks a user JWT and a user nkey seed") as caught:
        Node(config)
    assert caught.value.field == "nats_creds_file"

    jwt_only = user.write_creds(tmp_path / "jwt-only.creds")
    jwt_only.write_text(user.creds().replace(user.identity.seed, ""))
    with pytest.raises(ConfigError, match=r"is not a NATS \.creds file: it lacks a user nkey"):
        Node(attrs.evolve(config, nats_creds_file=jwt_only))

    crlf = tmp_path / "crlf.creds"
    crlf.write_bytes(user.creds().replace("\n", "\r\n").encode())
    with pytest.raises(ConfigError, match=r"has \\r\\n line ends") as caught:
        Node(attrs.evolve(config, nats_creds_file=crlf))
    assert caught.value.field == "nats_creds_file"


def test_a_relative_creds_file_is_relative_to_home(tmp_path: Path) -> None:
    home = tmp_path / "ship1"
    creds = Operator.create().account("fleet").user("ship1").write_creds(home / "etc" / "a.creds")
    config = node_config(tmp_path, "ship1", "nats://127.0.0.1:4222", nats_creds_file="etc/a.creds")

    node = Node(config)

    settings = node.bridge.settings  # type: ignore[attr-defined]
    assert settings.user_credentials_file == str(creds)
    assert settings.nkeys_seed_file is None
