"""The ``store`` command: check or repair a stopped node's database (``var/lib/steward.db``).

``steward-otp store check --home H`` runs SQLite's integrity check and says what the store
holds; ``steward-otp store repair --home H`` keeps the old file aside and copies what can
be read into a new one (see :mod:`steward_otp.store.repair`). Both need the node stopped.

Exit status: 0 healthy (check) or repaired completely (repair); 1 damaged (check) or
repaired with rows left behind (repair); 2 the command cannot run (no node home, the node
is running).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Final, NoReturn

import typer

from steward_otp.cli.common import home_option, sub_app
from steward_otp.config import ConfigError
from steward_otp.config_env import EnvError, load_effective

__all__ = ["app"]

EXIT_DAMAGED: Final = 1
EXIT_CANNOT_RUN: Final = 2

app = sub_app(
    "store",
    "Check or repair a stopped node's database (var/lib/steward.db by default).",
)

Home = Annotated[
    Path,
    home_option("The node's home folder (its config file names the database folder)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]


def _fail(text: str) -> NoReturn:
    typer.echo(f"store: error: {text}", err=True)
    raise typer.Exit(EXIT_CANNOT_RUN)


def _store_file(home: Path) -> Path:
    """The store file of the node whose home is ``home``, found as the daemon finds it:
    ``database_folder`` from ``STEWARD_OTP_DATABASE_FOLDER``, else its config.toml."""
    if not (home / "etc" / "config.toml").is_file():
        _fail(f"{home} is not a node's home folder: it has no etc/config.toml")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = load_effective(home)
    except EnvError as exc:  # names the variable
        _fail(str(exc))
    except ConfigError as exc:
        _fail(f"{home / 'etc' / 'config.toml'}: {exc}")
    from steward_otp.store import store_path  # noqa: PLC0415  # loads sqlite3: only when run

    return store_path(config.db_dir)


@app.command("check")
def check(home: Home = Path("."), as_json: AsJson = False) -> None:
    """Run SQLite's integrity check on the store and count what it holds. Exit 0 when it
    is healthy, 1 when it is damaged (then run `steward-otp store repair`), 2 when it
    cannot be checked (e.g. the node is running). Nothing is changed, except that a store
    found healthy loses the damage mark that kept the node from starting."""
    path = _store_file(home)
    from steward_otp.store.repair import StoreInUse, check_store  # noqa: PLC0415

    try:
        report = check_store(path)
    except StoreInUse as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot check {path}: {exc}")
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "path": str(report.path),
                    "exists": report.exists,
                    "ok": report.ok,
                    "problems": list(report.problems),
                    "counts": dict(report.counts),
                    "mark_removed": report.mark_removed,
                }
            )
        )
    elif not report.exists:
        typer.echo(f"{path}: no store yet (the node creates it at its first start)")
    elif report.ok:
        held = ", ".join(f"{name} {count}" for name, count in report.counts.items())
        typer.echo(f"{path}: ok ({held})")
        if report.mark_removed:
            typer.echo(
                f"the damage noted earlier is gone; the node may start: {report.mark_removed}"
            )
    else:
        typer.echo(f"{path}: DAMAGED")
        for problem in report.problems:
            typer.echo(f"  {problem}")
        typer.echo(
            f"Copy what can be read into a new store (the old file is kept aside): "
            f"steward-otp store repair --home {home}"
        )
    raise typer.Exit(0 if report.ok else EXIT_DAMAGED)


@app.command("repair")
def repair(home: Home = Path("."), as_json: AsJson = False) -> None:
    """Keep the store file aside (steward.db.damaged-<time>) and build a new store from
    every row that can still be read. Exit 0 when everything was copied, 1 when something
    could not be read (the report says what), 2 when it cannot run (e.g. the node is
    running). Messages that are lost this way are not sent; a node that cannot start on
    an empty or unreadable store starts again afterwards."""
    path = _store_file(home)
    from steward_otp.store.repair import StoreInUse, repair_store  # noqa: PLC0415

    try:
        report = repair_store(path)
    except StoreInUse as exc:
        _fail(str(exc))
    except (FileNotFoundError, OSError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "path": str(report.path),
                    "kept_aside": str(report.kept_aside),
                    "complete": report.complete,
                    "problem": report.problem,
                    "tables": {
                        t.table: {"copied": t.copied, "unreadable": t.unreadable}
                        for t in report.tables
                    },
                }
            )
        )
    else:
        typer.echo(f"the old store is kept aside as {report.kept_aside}")
        if report.problem is not None:
            typer.echo(f"nothing could be copied: it {report.problem}")
        for table in report.tables:
            lost = f", {table.unreadable} unreadable" if table.unreadable else ""
            typer.echo(f"  {table.table}: {table.copied} rows copied{lost}")
        state = "complete" if report.complete else "done, with what could be read"
        typer.echo(f"{report.path}: new store {state}; the node can start again")
    raise typer.Exit(0 if report.complete else EXIT_DAMAGED)
