"""The ``keys`` command: this node's public key and its trust store (``keys.json``).

Works on the files of the home folder, whether the node runs or not: a running node picks up
the change within a second. Meant to become ``steward-otp keys ...``; until then::

    python -m steward_otp.security.keys_cli --home /srv/central ls

Commands: ``show`` (this node's public key, created on first use), ``ls`` (allowed and
pending keys), ``allow NODE...`` (a pending key becomes allowed), ``add NODE KEY`` (allow a
key given by hand, e.g. central's on a node), ``delete NODE...``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Final, NoReturn

import typer

from steward_otp.cli.common import AsJson, fail, home_option, sub_app
from steward_otp.security.keyfiles import (
    KeyFileError,
    decode_key_text,
    encode_key_text,
    load_or_create,
    signing_dir,
)
from steward_otp.security.trust import TrustError, TrustState, TrustStore

__all__ = ["app", "main"]

EXIT_REFUSED: Final = 1

app = sub_app(
    "keys",
    "This node's signing key and the keys it trusts (etc/signing/keys.json).",
)

Home = Annotated[
    Path,
    home_option("The node's home folder (holds etc/signing/)."),
]


def _fail(text: str) -> NoReturn:
    fail("keys", text, EXIT_REFUSED)


def _store(home: Path) -> TrustStore:
    try:
        return TrustStore(signing_dir(home.absolute() / "etc"))
    except TrustError as exc:
        _fail(str(exc))


def _update(home: Path, change: Callable[[TrustState], TrustState]) -> TrustState:
    store = _store(home)
    try:
        return store.update(change)
    except TrustError as exc:
        _fail(str(exc))


@app.command()
def show(home: Home = Path("."), as_json: AsJson = False) -> None:
    """Print this node's public signing key (base64), creating the key pair if needed."""
    folder = signing_dir(home.absolute() / "etc")
    try:
        key, created = load_or_create(folder)
    except KeyFileError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(
            json.dumps({"public_key": key.public_text, "folder": str(folder), "created": created})
        )
        return
    if created:
        typer.echo(f"created a new key pair in {folder}", err=True)
    typer.echo(key.public_text)


@app.command("ls")
def list_keys(home: Home = Path("."), as_json: AsJson = False) -> None:
    """List allowed and pending keys (with --json: keys.json's content)."""
    state = _store(home).state
    if as_json:
        typer.echo(state.to_json(), nl=False)
        return
    for node, key in state.allowed.items():
        typer.echo(f"allowed  {node}  {encode_key_text(key)}")
    for node, pending in state.pending.items():
        seen = datetime.datetime.fromtimestamp(pending.first_seen, datetime.UTC)
        typer.echo(
            f"pending  {node}  {encode_key_text(pending.key)}  first seen "
            f"{seen.isoformat(timespec='seconds')}"
        )


@app.command()
def allow(nodes: list[str], home: Home = Path(".")) -> None:
    """Allow the pending keys of NODES (all or none)."""
    _update(home, lambda s: s.allow(nodes))
    typer.echo(f"allowed public keys for the nodes=[{' '.join(nodes)}]")


@app.command()
def add(node: str, key: str, home: Home = Path(".")) -> None:
    """Allow KEY (base64, as `keys show` prints it) for NODE."""
    try:
        raw = decode_key_text(key, size=32, what="KEY")
    except ValueError as exc:
        _fail(str(exc))
    _update(home, lambda s: s.add(node, raw))
    typer.echo(f"allowed the given public key for {node}")


@app.command()
def delete(nodes: list[str], home: Home = Path(".")) -> None:
    """Delete the allowed and pending keys of NODES."""
    _update(home, lambda s: s.delete(nodes))
    typer.echo(f"deleted public keys for the nodes=[{' '.join(nodes)}]")


def main() -> None:
    """Run the ``keys`` command."""
    app(prog_name="keys")


if __name__ == "__main__":
    main()
