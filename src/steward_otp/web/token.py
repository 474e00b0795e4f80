"""The web view's access token: made by ``steward-otp web token``, kept only as a hash.

The token is 32 random bytes (URL-safe base64), printed once. ``<home>/etc/web-token.sha256``
(mode 0600) holds the SHA-256 of it in hex; a new token replaces the old one, which stops
working at once (a running node reads the file again when it changes). SHA-256 is enough
for a random 256-bit secret: there is nothing to guess a dictionary from.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Final

from steward_otp.atomic_file import write_atomically

TOKEN_FILE_NAME: Final = "web-token.sha256"
TOKEN_BYTES: Final = 32
_HEX_LENGTH: Final = 64


class TokenError(Exception):
    """The token file cannot be written or read; ``str()`` names the file and why."""


def token_path(etc_dir: Path) -> Path:
    """Where the token's hash lives: ``<etc_dir>/web-token.sha256``."""
    return etc_dir / TOKEN_FILE_NAME


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).hexdigest()


def create_token(etc_dir: Path) -> str:
    """Make a new token, store its hash (file mode 0600, replacing any older one) and
    return the token. Raises :class:`TokenError` when the file cannot be written."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path = token_path(etc_dir)
    try:
        etc_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, _digest(token) + "\n", mode=0o600)
    except OSError as exc:
        raise TokenError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return token


class TokenCheck:
    """Checks a presented token against the stored hash.

    The file is read again whenever it is replaced or changes, so a token made while the
    node runs applies to the next request. No file, or a file that does not
    hold a SHA-256 hex digest: every token is refused (:attr:`problem` says why).
    """

    def __init__(self, etc_dir: Path) -> None:
        self.path = token_path(etc_dir)
        self._seen: tuple[int, int, int] | None = None
        self._digest: str | None = None
        self.problem = ""

    def _load(self) -> str | None:
        try:
            stat = self.path.stat()
        except OSError as exc:
            self._seen, self._digest = None, None
            self.problem = (
                f"no web token ({self.path}: {exc.strerror or exc}); create one with "
                "`steward-otp web token --home HOME`"
            )
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # a new token is a new file
        if key != self._seen:
            self._seen = key
            try:
                text = self.path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as exc:
                text = f"unreadable: {exc}"
            valid = len(text) == _HEX_LENGTH and all(c in "0123456789abcdef" for c in text)
            self._digest = text if valid else None
            self.problem = (
                ""
                if valid
                else f"{self.path} does not hold a token hash; make a new token with "
                "`steward-otp web token --home HOME`"
            )
        return self._digest

    def stored(self) -> bool:
        """Whether a token hash is stored (when not, :attr:`problem` says why)."""
        return self._load() is not None

    def matches(self, token: str) -> bool:
        """Whether ``token`` is the current token (compared in constant time)."""
        stored = self._load()
        if stored is None or not token:
            return False
        return hmac.compare_digest(_digest(token), stored)


__all__ = ["TOKEN_FILE_NAME", "TokenCheck", "TokenError", "create_token", "token_path"]
