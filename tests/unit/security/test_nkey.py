"""The NATS nkey derived from an OpenSSH ed25519 key (spec 8.1)."""

from __future__ import annotations

import stat
from pathlib import Path

import nkeys  # type: ignore[import-untyped]  # no type information
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    EllipticCurvePrivateKey,
    generate_private_key,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from steward_otp.security.nkey import (
    NkeyError,
    crc16_xmodem,
    nkey_from_ssh_key,
    user_nkey_from_seed,
    write_nkey_files,
)


def ssh_key_file(path: Path, key: Ed25519PrivateKey | EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    return path


def test_crc16_is_xmodem() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3


@given(st.binary(min_size=32, max_size=32))
def test_the_seed_is_an_nkey_user_seed_of_the_same_key(seed: bytes) -> None:
    derived = user_nkey_from_seed(seed)

    assert derived.seed.startswith("SU") and derived.public.startswith("U")
    pair = nkeys.from_seed(bytearray(derived.seed.encode()))
    assert pair.public_key.decode() == derived.public
    assert bytes(pair.private_key)  # a usable key pair
    assert nkeys.encode_seed(seed, nkeys.PREFIX_BYTE_USER).decode() == derived.seed


def test_an_openssh_ed25519_key_gives_the_nkey_of_its_seed(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = ssh_key_file(tmp_path / "id_ed25519", key)

    derived = nkey_from_ssh_key(path)

    assert derived == user_nkey_from_seed(key.private_bytes_raw())


def test_the_files_are_written_for_the_server_configuration(tmp_path: Path) -> None:
    derived = user_nkey_from_seed(bytes(32))

    seed_file = write_nkey_files(derived, tmp_path / "tmp")

    assert seed_file == tmp_path / "tmp" / "seed_from_ssh_key.txt"
    assert seed_file.read_text().strip() == derived.seed
    assert stat.S_IMODE(seed_file.stat().st_mode) == 0o600
    assert (tmp_path / "tmp" / "user_from_ssh_key.txt").read_text().strip() == derived.public


def test_other_key_types_are_refused(tmp_path: Path) -> None:
    path = ssh_key_file(tmp_path / "id_ecdsa", generate_private_key(SECP256R1()))

    with pytest.raises(NkeyError, match="only ed25519 keys can give an nkey"):
        nkey_from_ssh_key(path)


# A throwaway key made for this test: ssh-keygen -t ed25519 -N secret -C ""
PROTECTED = """\
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBYafhZBy
mplUOv8KzSfJTKAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIF6j7zHOaKTNML9Z
n+bmGmSoRem66rGFpNAE2At93h5gAAAAkBo/Y6QiRwCj2OZ99xVD14wdtd2XRgrwTjuS2U
8Z3KajP4hSjxjZJgBZdXOQ9xBDFVHCRTctYByq9DZq12trqvIlZc+IRNLLguQ2ZZa0Z7Tp
FtYWOM9mhLRzlJFTG4YCdrVA0ACJJa0dwY+ZGLyE7oqLXIdG5130Wdadcec1Ak8Yy9zT+D
j9Z0pbcKgb0LCXgQ==
-----END OPENSSH PRIVATE KEY-----
"""


def test_a_passphrase_protected_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    path.write_text(PROTECTED)

    with pytest.raises(NkeyError, match="protected by a passphrase"):
        nkey_from_ssh_key(path)


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "cannot read the SSH key"), (b"hello", "not an OpenSSH")]
)
def test_a_missing_or_unreadable_key_is_refused(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "id_ed25519"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(NkeyError, match=problem):
        nkey_from_ssh_key(path)
