"""Security settings: each one is wired, or refused as not available yet. No silent switches."""

from __future__ import annotations

import base64
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from steward_otp.config import (
    SETTINGS,
    Config,
    ConfigError,
    load_config,
    render_config,
)
from steward_otp.node import Node
from steward_otp.security.nkey import nkey_from_ssh_key
from steward_otp.security.service import SecuritySetupError
from tests.pki import Authority

DAY = 86400


def write(home: Path, text: str) -> None:
    (home / "etc").mkdir(parents=True, exist_ok=True)
    (home / "etc" / "config.toml").write_text(text)


def test_acl_checks_need_signature_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {"node_name": "ship1", "enable_acl_check": True})

    assert str(caught.value).startswith(
        "enable_acl_check = True is not allowed: it needs enable_signature_check = true: the "
        "ACL allows commands by the node that signed them"
    )
    assert caught.value.field == "enable_acl_check"
    config = load_config(
        tmp_path,
        {"node_name": "ship1", "enable_acl_check": True, "enable_signature_check": True},
    )
    assert config.enable_acl_check


def test_a_stewards_acl_check_without_signature_check_is_refused(tmp_path: Path) -> None:
    write(tmp_path, 'NodeName = "ship1"\nEnableAclCheck = true\n')

    with pytest.raises(ConfigError, match=r"config.toml: EnableAclCheck = True is not allowed"):
        load_config(tmp_path)


def test_stewards_acl_update_keys_are_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        'NodeName = "ship1"\nEnableSignatureCheck = true\nEnableAclCheck = true\n'
        "EnableAclUpdates = true\nREQAclRequestUpdateInterval = 90\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(tmp_path)

    assert (config.enable_acl_check, config.enable_acl_updates) == (True, True)
    assert config.acl_update_interval == 90
    assert "acl_update_interval = 90" in render_config(config)


@pytest.mark.parametrize(
    ("key", "field", "value"),
    [
        ("enable_key_updates = true", "enable_key_updates", True),
        ("keys_update_interval = 90", "keys_update_interval", 90),
        ("EnableKeyUpdates = true", "enable_key_updates", True),
        ("REQKeysRequestUpdateInterval = 90", "keys_update_interval", 90),
    ],
)
def test_key_update_settings_are_read_under_both_names(
    tmp_path: Path, key: str, field: str, value: object
) -> None:
    write(tmp_path, f'node_name = "ship1"\n{key}\n')

    config = load_config(tmp_path)

    assert getattr(config, field) == value
    assert f"{field} = " in render_config(config)


def test_no_security_setting_is_accepted_without_effect() -> None:
    security = {s.name for s in SETTINGS if s.section == "Security"}
    assert security == {
        "enable_signature_check",
        "signature_max_age",
        "signature_batches",  # test_key_methods_and_command.py: signed alone when off
        "central_public_key",
        "enable_acl_check",
        "enable_acl_updates",
        "acl_update_interval",
        "enable_key_updates",
        "keys_update_interval",
        "is_central_auth",
    }


def test_signature_max_age_must_leave_replays_to_the_dedupe_memory(tmp_path: Path) -> None:
    settings = {"node_name": "ship1", "enable_signature_check": True}
    ok = load_config(tmp_path, {**settings, "signature_max_age": 7 * DAY - 300})
    assert ok.signature_max_age == 7 * DAY - 300

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {**settings, "signature_max_age": 7 * DAY})

    assert str(caught.value).startswith(
        "signature_max_age = 604800 is not allowed: with enable_signature_check on it must be "
        "at most dedupe_retention_seconds (604800) minus 300 seconds of clock allowance"
    )
    # Without signature checks the age is not used, and not checked.
    load_config(tmp_path, {"node_name": "ship1", "signature_max_age": 30 * DAY})


def test_central_public_key_must_be_a_key(tmp_path: Path) -> None:
    good = base64.b64encode(bytes(32)).decode()
    assert load_config(tmp_path, {"node_name": "a", "central_public_key": good})
    assert load_config(tmp_path, {"node_name": "a", "central_public_key": good.rstrip("=")})

    with pytest.raises(ConfigError, match="must be empty or a base64 ed25519 public key"):
        load_config(tmp_path, {"node_name": "a", "central_public_key": "c2hvcnQ="})


def test_a_node_refuses_to_start_with_a_damaged_signing_key(tmp_path: Path) -> None:
    config = Config(home=tmp_path, node_name="ship1")
    (tmp_path / "etc" / "signing").mkdir(parents=True)
    (tmp_path / "etc" / "signing" / "public.key").write_text("AAAA")

    with pytest.raises(SecuritySetupError, match="this node's signing key is missing"):
        Node(config)


def test_the_nkey_derived_from_an_ssh_key_is_what_the_node_connects_with(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "ssh" / "id_ed25519"
    key_file.parent.mkdir()
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    config = load_config(
        tmp_path,
        {
            "node_name": "ship1",
            "broker_address": "nats://127.0.0.1:4222",
            "nkey_from_ed25519_ssh_key_file": "ssh/id_ed25519",  # relative: to home
        },
    )

    node = Node(config)

    seed_file = tmp_path / "tmp" / "seed_from_ssh_key.txt"
    assert node.bridge.settings.nkeys_seed_file == str(seed_file)  # type: ignore[attr-defined]
    assert seed_file.read_text().strip() == nkey_from_ssh_key(key_file).seed


def test_a_bad_ssh_key_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    config = load_config(
        tmp_path,
        {
            "node_name": "ship1",
            "broker_address": "nats://127.0.0.1:4222",
            "nkey_from_ed25519_ssh_key_file": "missing",
        },
    )

    with pytest.raises(ConfigError, match="cannot read the SSH key") as caught:
        Node(config)
    assert caught.value.field == "nkey_from_ed25519_ssh_key_file"


def test_an_nkey_seed_file_with_an_ssh_key_is_refused_naming_both(tmp_path: Path) -> None:
    overrides = {
        "node_name": "ship1",
        "nkey_from_ed25519_ssh_key_file": "ssh/id_ed25519",
        "nkey_seed_file": "etc/user.seed",
    }
    with pytest.raises(ConfigError, match="and nkey_seed_file exclude each other") as caught:
        load_config(tmp_path, overrides)
    assert caught.value.field == "nkey_from_ed25519_ssh_key_file"
    assert "'etc/user.seed'" in str(caught.value)


@pytest.mark.parametrize(
    ("field", "content", "says"),
    [
        ("root_ca_path", None, "root_ca_path = '{path}': cannot read it: No such file"),
        ("root_ca_path", b"not a certificate", "root_ca_path = '{path}' holds no CA certificate"),
        ("nkey_seed_file", None, "nkey_seed_file = '{path}': cannot read it: No such file"),
        ("nkey_seed_file", b"UABC\n", "nkey_seed_file = '{path}' holds no nkey user seed"),
        ("tls_cert_file", None, "tls_cert_file = '{path}': cannot read it: No such file"),
        ("tls_cert_file", b"junk", "tls_cert_file = '{path}' and tls_key_file are not a PEM"),
    ],
)
def test_a_tls_or_nkey_file_that_cannot_serve_stops_the_start_naming_it(
    tmp_path: Path, field: str, content: bytes | None, says: str
) -> None:
    """Refused when the node is made, not left to fail every connection attempt."""
    authority = Authority(tmp_path / "pki", "fleet-ca")
    cert, key = authority.issue("ship1", server=False)
    files: dict[str, object] = {"root_ca_path": authority.ca_file}
    if field == "tls_cert_file":
        files = {"tls_cert_file": cert, "tls_key_file": key}
    path = tmp_path / "etc" / "broken.pem"
    if content is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    overrides = {"node_name": "ship1", "broker_address": "tls://127.0.0.1:4222", **files}
    config = load_config(tmp_path, {**overrides, field: str(path)})

    with pytest.raises(ConfigError) as caught:
        Node(config)

    assert caught.value.field == field
    assert str(caught.value).startswith(says.format(path=path)), str(caught.value)


def test_relative_nkey_seed_and_root_ca_files_are_relative_to_home(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "user.seed").write_text(
        "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU\n"
    )
    Authority(tmp_path / "etc", "fleet-ca")  # etc/ca.pem
    config = load_config(
        tmp_path,
        {
            "node_name": "ship1",
            "broker_address": "tls://127.0.0.1:4222",
            "nkey_seed_file": "etc/user.seed",
            "root_ca_path": "etc/ca.pem",
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        node = Node(config)

    settings = node.bridge.settings  # type: ignore[attr-defined]
    assert settings.nkeys_seed_file == str(tmp_path / "etc" / "user.seed")
    assert settings.tls_ca_file == str(tmp_path / "etc" / "ca.pem")
