"""NATS JWTs (v2) and ``.creds`` files for tests of operator mode, minted without ``nsc``.

The tokens follow nats-io/jwt v2: a ``{"typ":"JWT","alg":"ed25519-nkey"}`` header, claims
whose ``jti`` is the unpadded base32 SHA-512/256 of the common claims (serialized without
``jti``), and an ed25519 signature by the issuer's nkey over ``<header>.<claims>``, each
part base64url without padding. An operator signs itself and its accounts; an account signs
its users. The limits are the ones nsc gives by default (-1: no limit), so the users may
connect, publish and subscribe to anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import attrs
import nkeys  # type: ignore[import-untyped]  # no type information

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}

NO_LIMIT = -1


@attrs.frozen
class Identity:
    """An nkey pair of one role (operator, account or user): its seed and public key."""

    seed: str
    public_key: str

    @classmethod
    def create(cls, prefix: int) -> Identity:
        """A new random key pair with the role ``prefix`` (``nkeys.PREFIX_BYTE_*``)."""
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        return cls(seed.decode(), nkeys.from_seed(bytearray(seed)).public_key.decode())

    def sign(self, data: bytes) -> bytes:
        """The raw ed25519 signature of ``data`` by this key."""
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def encode_jwt(issuer: Identity, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A v2 JWT for ``subject`` with the type-specific claims ``nats``, signed by ``issuer``."""
    common: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key,
        "name": name,
        "sub": subject,
    }
    jti = base64.b32encode(hashlib.new("sha512_256", _compact(common)).digest())
    claims = {"jti": jti.rstrip(b"=").decode(), **common, "nats": nats}
    signed = f"{_b64url(_compact(HEADER))}.{_b64url(_compact(claims))}"
    return f"{signed}.{_b64url(issuer.sign(signed.encode()))}"


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of ``token`` (unverified)."""
    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


@attrs.frozen
class Operator:
    """A self-signed operator."""

    identity: Identity
    jwt: str

    @classmethod
    def create(cls, name: str = "test-operator") -> Operator:
        """A new operator with a fresh key."""
        identity = Identity.create(nkeys.PREFIX_BYTE_OPERATOR)
        nats = {"type": "operator", "version": 2}
        return cls(identity, encode_jwt(identity, identity.public_key, name, nats))

    def account(self, name: str) -> Account:
        """A new account signed by this operator, without limits."""
        identity = Identity.create(nkeys.PREFIX_BYTE_ACCOUNT)
        nats = {
            "limits": {
                "subs": NO_LIMIT,
                "data": NO_LIMIT,
                "payload": NO_LIMIT,
                "imports": NO_LIMIT,
                "exports": NO_LIMIT,
                "wildcards": True,
                "conn": NO_LIMIT,
                "leaf": NO_LIMIT,
            },
            "default_permissions": {"pub": {}, "sub": {}},
            "type": "account",
            "version": 2,
        }
        return Account(identity, encode_jwt(self.identity, identity.public_key, name, nats))


@attrs.frozen
class Account:
    """An account signed by an operator."""

    identity: Identity
    jwt: str

    def user(self, name: str) -> User:
        """A new user of this account, allowed everything."""
        identity = Identity.create(nkeys.PREFIX_BYTE_USER)
        nats = {
            "pub": {},
            "sub": {},
            "subs": NO_LIMIT,
            "data": NO_LIMIT,
            "payload": NO_LIMIT,
            "type": "user",
            "version": 2,
        }
        return User(identity, encode_jwt(self.identity, identity.public_key, name, nats))


@attrs.frozen
class User:
    """A user signed by an account: what a ``.creds`` file carries."""

    identity: Identity
    jwt: str

    def creds(self) -> str:
        """The text of this user's ``.creds`` file, as ``nsc generate creds`` writes it."""
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.jwt}\n"
            "------END NATS USER JWT------\n"
            "\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n"
            "\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.identity.seed}\n"
            "------END USER NKEY SEED------\n"
            "\n"
            "*************************************************************\n"
        )

    def write_creds(self, path: Path) -> Path:
        """Write :meth:`creds` to ``path`` (mode 0600); returns ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.creds(), encoding="ascii")
        path.chmod(0o600)
        return path


def server_config(operator: Operator, accounts: list[Account]) -> str:
    """A nats-server configuration trusting ``operator``, with ``accounts`` preloaded."""
    preload = "\n".join(f"  {a.identity.public_key}: {a.jwt}" for a in accounts)
    return f"operator: {operator.jwt}\nresolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
