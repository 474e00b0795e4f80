"""Building blocks every ``steward-otp`` sub-command shares: the ``--home`` option and the
sub-application's settings (plain help, no completion, no pretty tracebacks)."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

__all__ = ["HOME_ENV", "AsJson", "fail", "home_option", "sub_app"]

HOME_ENV = "STEWARD_OTP_HOME"
"""The environment variable every command reads the home folder from."""


AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
"""The ``--json`` flag of commands whose whole answer is one object."""


def home_option(help_text: str, **extra: Any) -> Any:
    """The ``--home`` option (``STEWARD_OTP_HOME``, default the current folder, a folder):
    ``Annotated[Path, home_option("...")]``."""
    return typer.Option(
        envvar=HOME_ENV,
        help=help_text,
        show_default="the current folder",
        file_okay=False,
        **extra,
    )


def fail(command: str, text: str, status: int = 1) -> NoReturn:
    """Print ``<command>: error: <text>`` on stderr and exit with ``status``."""
    typer.echo(f"{command}: error: {text}", err=True)
    raise typer.Exit(status)


def sub_app(name: str, help_text: str) -> typer.Typer:
    """A sub-command group of ``steward-otp`` (``steward-otp NAME ...``)."""
    return typer.Typer(
        name=name,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
