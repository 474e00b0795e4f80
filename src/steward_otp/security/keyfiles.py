"""A node's signing key pair on disk: ``<home>/etc/signing/private.key`` and ``public.key``.

The format is Steward's (spec 8.2), so a Steward home's keys are taken over as they are:
standard base64 **without padding** of the 64-byte private key (32-byte seed, then the
32-byte public key) and of the 32-byte public key. The folder is created with mode 0700 and
the private key with 0600.

* Neither file: a new key pair is created (first start).
* Both files: loaded; they must belong together.
* Only ``private.key``: ``public.key`` is written again from it.
* Only ``public.key``: refused -- creating a new private key would silently change this
  node's identity, and every node that trusts the old key would refuse its messages.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from pathlib import Path
from typing import Final

import attrs
import nacl.signing

__all__ = [
    "KeyFileError",
    "SigningKey",
    "decode_key_text",
    "encode_key_text",
    "load_or_create",
    "signing_dir",
]

log = logging.getLogger(__name__)

PRIVATE_FILE: Final = "private.key"
PUBLIC_FILE: Final = "public.key"


class KeyFileError(Exception):
    """The key files cannot be used; the text names the file and what to do."""


def signing_dir(etc_dir: Path) -> Path:
    """``<home>/etc/signing``."""
    return etc_dir / "signing"


def encode_key_text(raw: bytes) -> str:
    """Standard base64 without padding (Steward's key file format)."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def decode_key_text(text: str, *, size: int, what: str) -> bytes:
    """The bytes of a base64 key (padding optional); raises ``ValueError`` naming ``what``."""
    cleaned = "".join(text.split())
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64: {exc}") from None
    if len(raw) != size:
        raise ValueError(f"{what} holds {len(raw)} bytes; an ed25519 key has {size}")
    return raw


@attrs.frozen
class SigningKey:
    """A node's ed25519 key pair."""

    private: nacl.signing.SigningKey = attrs.field(repr=False)
    """The private key (libsodium's; ``bytes()`` of it is the 32-byte seed)."""
    public: bytes
    """The raw 32-byte public key (what REQHello and REQPublicKey carry)."""

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key pair."""
        private = nacl.signing.SigningKey.generate()
        return cls(private, bytes(private.verify_key))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key pair of a 32-byte seed."""
        private = nacl.signing.SigningKey(seed)
        return cls(private, bytes(private.verify_key))

    @property
    def public_text(self) -> str:
        """The public key as written in ``public.key`` and ``keys.json``."""
        return encode_key_text(self.public)

    def private_text(self) -> str:
        """The 64-byte private key (seed, then public key) as written in ``private.key``."""
        return encode_key_text(bytes(self.private) + self.public)


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create ``path`` (it must not exist) with ``mode``, write ``text`` and fsync it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(descriptor, text.encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_private(path: Path) -> SigningKey:
    try:
        raw = decode_key_text(path.read_text(encoding="ascii"), size=64, what=str(path))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KeyFileError(f"cannot read the signing key {path}: {exc}") from None
    key = SigningKey.from_seed(raw[:32])
    if key.public != raw[32:]:
        raise KeyFileError(
            f"{path} is damaged: its public half does not belong to its seed; restore it "
            "from a backup"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s can be read by other users (mode %o); run: chmod 600 %s", path, mode, path)
    return key


def load_or_create(folder: Path) -> tuple[SigningKey, bool]:
    """The key pair in ``folder`` (see the module docstring); True when it was created now.

    Raises :class:`KeyFileError` with a message for the operator.
    """
    private_path, public_path = folder / PRIVATE_FILE, folder / PUBLIC_FILE
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create {folder}: {exc.strerror or exc}") from None
    created = False
    if not private_path.exists():
        if public_path.exists():
            raise KeyFileError(
                f"{public_path} exists but {private_path} does not: this node's signing key "
                "is missing. Restore private.key from a backup, or delete public.key to make "
                "a new key pair (nodes that trust the old key will then refuse this node's "
                "messages until the new one is allowed)"
            )
        key = SigningKey.generate()
        try:
            _write_new(private_path, key.private_text(), 0o600)
            created = True
        except FileExistsError:
            pass  # made at the same moment by another process: use that one
        except OSError as exc:
            raise KeyFileError(f"cannot write {private_path}: {exc.strerror or exc}") from None
    key = _read_private(private_path)
    try:
        stored_public = public_path.read_text(encoding="ascii")
    except FileNotFoundError:
        stored_public = None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {public_path}: {exc}") from None
    if stored_public is None:
        try:
            _write_new(public_path, key.public_text, 0o644)
        except FileExistsError:
            pass  # written at the same moment by another process
        except OSError as exc:
            raise KeyFileError(f"cannot write {public_path}: {exc.strerror or exc}") from None
    else:
        try:
            public = decode_key_text(stored_public, size=32, what=str(public_path))
        except ValueError as exc:
            raise KeyFileError(str(exc)) from None
        if public != key.public:
            raise KeyFileError(
                f"{public_path} does not belong to {private_path}; delete public.key (it is "
                "written again from private.key)"
            )
    return key, created
