"""``steward-otp web``: the web view's access token (the view itself runs in the node, with
``--web-listener HOST:PORT``; see docs/web.md).

``steward-otp web token --home DIR`` makes a new random token, prints it once and keeps only
its SHA-256 in ``<home>/etc/web-token.sha256`` (mode 0600). The old token stops working at
once, also on a running node. The node does not need to run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Final

import typer

from steward_otp.cli.common import AsJson, home_option, sub_app
from steward_otp.web.token import TokenError, create_token, token_path

EXIT_FAILED: Final = 1

app = sub_app(
    "web",
    "The web view's access token (the view runs in the node with --web-listener).",
)

Home = Annotated[
    Path,
    home_option("The node's home folder (the token's hash goes to <home>/etc/)."),
]


@app.command("token")
def token(home: Home = Path("."), as_json: AsJson = False) -> None:
    """Make a new access token for the web view and print it (only this once).

    Only its hash is kept, in <home>/etc/web-token.sha256 (mode 0600); the previous token
    stops working at once. Give it to the login form, or to the API as
    "Authorization: Bearer TOKEN". Exit 1 when the file cannot be written.
    """
    etc_dir = home.absolute() / "etc"
    try:
        made = create_token(etc_dir)
    except TokenError as exc:
        typer.echo(f"steward-otp web: error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        typer.echo(json.dumps({"token": made, "hash_file": str(token_path(etc_dir))}))
        return
    typer.echo(made)
    typer.echo(
        f"(shown once; its hash is in {token_path(etc_dir)}; a new token replaces it)", err=True
    )


__all__ = ["app"]
