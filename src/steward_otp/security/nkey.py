"""A NATS nkey derived from an OpenSSH ed25519 private key (Steward's
``NkeyFromED25519SSHKeyFile``, spec 8.1).

The 32-byte seed of the SSH key becomes an nkey **user** seed (``SU...``): the bytes
``[0x90 | (0xA0 >> 5), (0xA0 & 31) << 3] + seed + crc16`` in base32 without padding, where
crc16 is CRC-16/XMODEM of everything before it, little-endian. The matching user public key
(``U...``, what the NATS server's configuration lists) is ``[0xA0] + public key + crc16`` the
same way. Both are written to the socket folder (``seed_from_ssh_key.txt``, mode 0600, and
``user_from_ssh_key.txt``), and the node authenticates with the seed file, as Steward did.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Final

import attrs
import nacl.signing

from steward_otp.atomic_file import write_atomically

__all__ = [
    "SEED_FILE",
    "USER_FILE",
    "NkeyError",
    "UserNkey",
    "crc16_xmodem",
    "nkey_from_ssh_key",
    "user_nkey_from_seed",
    "write_nkey_files",
]

SEED_FILE: Final = "seed_from_ssh_key.txt"
USER_FILE: Final = "user_from_ssh_key.txt"

_PREFIX_SEED: Final = 18 << 3  # 'S'
_PREFIX_USER: Final = 20 << 3  # 'U' (0xA0)


class NkeyError(Exception):
    """The SSH key cannot give an nkey; the text names the file and why."""


def crc16_xmodem(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, initial value 0), as nkeys uses."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _encode(raw: bytes) -> str:
    checked = raw + crc16_xmodem(raw).to_bytes(2, "little")
    return base64.b32encode(checked).decode("ascii").rstrip("=")


@attrs.frozen
class UserNkey:
    """An nkey user: the seed to authenticate with and the public key the server lists."""

    seed: str = attrs.field(repr=False)
    public: str


def user_nkey_from_seed(seed: bytes) -> UserNkey:
    """The nkey user of a 32-byte ed25519 seed."""
    if len(seed) != 32:
        raise NkeyError(f"an ed25519 seed has 32 bytes, not {len(seed)}")
    header = bytes([_PREFIX_SEED | (_PREFIX_USER >> 5), (_PREFIX_USER & 31) << 3])
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    return UserNkey(_encode(header + seed), _encode(bytes([_PREFIX_USER]) + public))


def nkey_from_ssh_key(path: Path) -> UserNkey:
    """The nkey user of the OpenSSH ed25519 private key in ``path`` (not passphrase
    protected). Raises :class:`NkeyError` for anything else."""
    # Only this setting reads OpenSSH keys: the library is loaded when it is used.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_ssh_private_key,
    )

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NkeyError(f"cannot read the SSH key {path}: {exc.strerror or exc}") from None
    try:
        key = load_ssh_private_key(data, password=None)
    except TypeError:
        raise NkeyError(
            f"{path} is protected by a passphrase; give an unprotected ed25519 key"
        ) from None
    except (ValueError, Exception) as exc:  # cryptography raises several types here
        raise NkeyError(f"{path} is not an OpenSSH private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NkeyError(
            f"{path} holds a {type(key).__name__.removesuffix('PrivateKey') or 'non'} key; "
            "only ed25519 keys can give an nkey"
        )
    return user_nkey_from_seed(key.private_bytes_raw())


def write_nkey_files(nkey: UserNkey, folder: Path) -> Path:
    """Write the seed (mode 0600) and the user public key into ``folder``; return the seed
    file's path."""
    folder.mkdir(mode=0o770, parents=True, exist_ok=True)
    seed_path = folder / SEED_FILE
    write_atomically(seed_path, nkey.seed + "\n")
    (folder / USER_FILE).write_text(nkey.public + "\n", encoding="ascii")
    return seed_path
