"""Mutual TLS against a real nats-server that verifies client certificates.

A throw-away CA signs the server's certificate (for 127.0.0.1) and the nodes' client
certificates. Nodes with ``root_ca_path`` + ``tls_cert_file`` + ``tls_key_file`` exchange a
command and its reply; a node without a client certificate, or with one from another CA,
is refused and says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from steward_otp.config import ConfigError
from steward_otp.node import Node
from steward_otp.transport import ConnectionState
from tests.conftest import NatsServer
from tests.nodes import echo_command, file_text, node_config, wait_for
from tests.pki import Authority

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[NatsServer, Authority]]:
    authority = Authority(tmp_path / "pki", "fleet-ca")
    cert, key = authority.issue("broker", server=True)
    config = tmp_path / "nats-tls.conf"
    config.write_text(
        f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n'
        f'  ca_file: "{authority.ca_file}"\n  verify: true\n  timeout: 5\n}}\n'
    )
    server = NatsServer(tmp_path / "nats", config_file=config)
    server.start()
    yield server, authority
    server.stop()


def tls_url(server: NatsServer) -> str:
    return f"tls://127.0.0.1:{server.port}"


async def test_nodes_with_client_certificates_exchange_a_command_and_its_reply(
    tls_server: tuple[NatsServer, Authority], tmp_path: Path
) -> None:
    server, authority = tls_server

    def node(name: str) -> Node:
        cert, key = authority.issue(name, server=False)
        return Node(
            node_config(
                tmp_path,
                name,
                tls_url(server),
                root_ca_path=authority.ca_file,
                tls_cert_file=cert,
                tls_key_file=key,
            )
        )

    central, ship1 = node("central"), node("ship1")
    result = tmp_path / "central" / "data" / "tls" / "ship1" / "out.txt"
    async with central, ship1:
        await central.submit([echo_command("over mutual tls", "tls")])
        await wait_for(lambda: file_text(result) == "over mutual tls\n")


@pytest.mark.parametrize("certificate", ["none", "another CA"])
async def test_a_node_without_a_trusted_client_certificate_is_refused_and_says_so(
    tls_server: tuple[NatsServer, Authority],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    certificate: str,
) -> None:
    server, authority = tls_server
    settings: dict[str, object] = {"root_ca_path": authority.ca_file}
    if certificate == "another CA":
        cert, key = Authority(tmp_path / "other-pki", "rogue-ca").issue("ship9", server=False)
        settings.update(tls_cert_file=cert, tls_key_file=key)
    node = Node(node_config(tmp_path, "ship9", tls_url(server), **settings))
    async with node:
        await wait_for(lambda: f"the broker {tls_url(server)} refused" in caplog.text)
        assert node.bridge.state is ConnectionState.CONNECTING
    assert "check root_ca_path, tls_cert_file and tls_key_file" in caplog.text


def test_a_certificate_without_its_key_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file go together"):
        node_config(tmp_path, "ship1", "tls://127.0.0.1:4222", tls_cert_file=Path("c.pem"))
