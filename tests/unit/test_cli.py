"""The steward-otp command line: help texts, version, and `run` up to the node start."""

import io
import logging
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from steward_otp import __version__
from steward_otp.cli import _METAVARS, app, program
from steward_otp.config import SETTINGS, Config, load_config
from steward_otp.logs import configure_logging

runner = CliRunner()

NOT_AVAILABLE = "fake node started with the configuration in "
"""What the stand-in for the node prints: these tests stop where the node would start."""


@pytest.fixture(autouse=True)
def fake_node(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Replace the node start with a stand-in that records the configuration and returns 0."""
    started: list[Config] = []

    def start(config: Config) -> int:
        started.append(config)
        typer.echo(f"{NOT_AVAILABLE}{config.config_file}", err=True)
        return 0

    monkeypatch.setattr(program, "_start_node", start)
    return started


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`run` configures the process's logging; put it back for the next test."""
    root = logging.getLogger()
    project = logging.getLogger("steward_otp")
    saved = (list(root.handlers), root.level, project.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    project.setLevel(saved[2])


def run(home: Path, *args: str) -> Result:
    return runner.invoke(app, ["run", "--home", str(home), *args])


# -- help -------------------------------------------------------------------------------------


def test_the_top_level_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])

    assert result.exit_code == 0
    assert "run" in result.stdout
    assert "version" in result.stdout


def test_run_help_lists_every_setting_as_an_option_with_its_explanation() -> None:
    result = runner.invoke(app, ["run", "--help"], terminal_width=200)

    assert result.exit_code == 0
    assert "--home" in result.stdout
    assert "STEWARD_OTP_HOME" in result.stdout
    flat = " ".join(result.stdout.split())
    for setting in SETTINGS:
        assert setting.flag in result.stdout, setting.flag
        assert " ".join(setting.help.split()) in flat, setting.name
    assert "--no-enable-socket" in result.stdout
    assert "<error|warning|info|debug>" in result.stdout
    assert "<auto|true|false>" in result.stdout


def test_version_help() -> None:
    result = runner.invoke(app, ["version", "--help"])

    assert result.exit_code == 0
    assert "steward-otp <version>" in result.stdout


def test_every_special_metavar_belongs_to_a_setting() -> None:
    assert set(_METAVARS) <= {s.name for s in SETTINGS}


# -- version ----------------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["version"])

    assert result.exit_code == 0
    assert result.stdout == f"steward-otp {__version__}\n"


def test_the_module_runs_as_a_program() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "steward_otp.cli", "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"steward-otp {__version__}\n"


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).with_name("steward-otp")
    if not script.exists():
        pytest.skip("the steward-otp console script is not installed next to this Python")

    completed = subprocess.run(
        [str(script), "version"], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"steward-otp {__version__}\n"


# -- run --------------------------------------------------------------------------------------


def test_run_writes_the_config_creates_the_folders_and_starts_the_node(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, "--node-name", "ship1", "--default-message-retries", "5")

    config_file = tmp_path / "etc" / "config.toml"
    assert result.exit_code == 0
    assert result.stderr == f"{NOT_AVAILABLE}{config_file}\n"
    assert "Traceback" not in result.output
    written = tomllib.loads(config_file.read_text(encoding="utf-8"))
    assert written["node_name"] == "ship1"
    assert written["default_message_retries"] == 5
    for folder in ("etc", "var/lib", "data", "tmp"):
        assert (tmp_path / folder).is_dir(), folder


def test_options_persist_and_later_options_override_the_file(tmp_path: Path) -> None:
    run(tmp_path, "--node-name", "ship1", "--start-pub-hello", "5", "--no-enable-socket")

    result = run(tmp_path, "--log-level", "debug")

    assert result.exit_code == 0
    config = load_config(tmp_path, {})
    assert config.node_name == "ship1"
    assert config.start_pub_hello == 5
    assert config.enable_socket is False
    assert config.log_level == "debug"


# A value different from the default for every setting, as given on the command line.
NON_DEFAULT_OPTIONS = {
    "delivery": "jetstream",
    "node_name": "ship.7",
    "central_node_name": "hq",
    "broker_address": "nats://10.0.0.5:4222",
    "embedded_broker_port": "14222",
    "tcp_listener": "127.0.0.1:9000",
    "http_listener": ":9001",
    "prom_host_and_port": "[::1]:2112",
    "expose_data_folder": "0.0.0.0:8080",
    "compression": "none",
    "log_level": "error",
    "is_central_error_logger": "true",
    "root_ca_path": "certs/ca.pem",
    "tls_cert_file": "certs/ship.pem",
    "tls_key_file": "certs/ship-key.pem",
    "web_listener": "127.0.0.1:8090",
    "disabled_methods": "REQCliCommand,REQTailFile",
    "nkey_seed_file": "/etc/nkey.seed",
    "central_public_key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
    "error_log_known_nodes": "ship1,ship2",
}

NOT_AVAILABLE_YET: set[str] = set()
"""Settings refused when switched on (their feature is not built): left at their default."""

EXCLUSIVE_OPTIONS = {
    "nats_creds_file": "creds/ship.creds",
    "nkey_from_ed25519_ssh_key_file": "ssh/id_ed25519",
}
"""Settings that exclude others set above (a .creds file carries its own nkey seed, an SSH
key gives the nkey): each is given in a run of its own, with the settings it excludes at
their defaults."""


def _non_default_arguments() -> list[str]:
    arguments: list[str] = []
    for setting in SETTINGS:
        if setting.name in NOT_AVAILABLE_YET or setting.name in EXCLUSIVE_OPTIONS:
            continue
        if setting.annotation is bool:
            arguments.append(setting.flag if not setting.default else f"--no-{setting.flag[2:]}")
            continue
        if setting.name in NON_DEFAULT_OPTIONS:
            value = NON_DEFAULT_OPTIONS[setting.name]
        elif setting.annotation is int:
            value = str(setting.default + 1)
        elif setting.annotation is float:
            value = str(setting.default + 1.5)
        elif setting.annotation is Path:
            value = f"other/{setting.default}"
        else:
            raise AssertionError(f"add a non-default value for {setting.name}")
        arguments += [setting.flag, value]
    return arguments


def test_every_option_reaches_the_written_config(tmp_path: Path) -> None:
    result = run(tmp_path, *_non_default_arguments())

    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(NOT_AVAILABLE)
    config = load_config(tmp_path, {})
    for setting in SETTINGS:
        if setting.name not in NOT_AVAILABLE_YET and setting.name not in EXCLUSIVE_OPTIONS:
            assert getattr(config, setting.name) != setting.default, setting.name


@pytest.mark.parametrize("name", sorted(EXCLUSIVE_OPTIONS))
def test_every_exclusive_option_reaches_the_written_config(tmp_path: Path, name: str) -> None:
    setting = next(setting for setting in SETTINGS if setting.name == name)
    result = run(tmp_path, "--node-name", "ship1", setting.flag, EXCLUSIVE_OPTIONS[name])

    assert result.exit_code == 0, result.output
    assert getattr(load_config(tmp_path, {}), name) != setting.default, name


def test_run_without_a_node_name_names_the_option(tmp_path: Path) -> None:
    result = run(tmp_path)

    assert result.exit_code == 2
    assert result.stderr.startswith("steward-otp: error: node_name is required")
    assert "--node-name" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "etc" / "config.toml").exists()


def test_a_bad_option_value_is_a_usage_error_without_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path, "--node-name", "ship 1")

    assert result.exit_code == 2
    assert result.stderr == (
        "steward-otp: error: node_name = 'ship 1' is not allowed: must be a non-empty NATS "
        "subject token sequence: tokens separated by single '.', no empty token, no whitespace, "
        "no control characters, no lone surrogates and none of '*', '>', '/', '\\' "
        "(given with --node-name)\n"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "etc" / "config.toml").exists()


def test_an_out_of_range_option_names_option_value_and_what_is_allowed(tmp_path: Path) -> None:
    result = run(tmp_path, "--node-name", "ship1", "--embedded-broker-port", "0")

    assert result.exit_code == 2
    assert result.stderr == (
        "steward-otp: error: embedded_broker_port = 0 is not allowed: must be a port number "
        "from 1 to 65535 (given with --embedded-broker-port)\n"
    )


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--default-message-retries", "many"], "Invalid value for '--default-message-retries'"),
        (["--log-level", "loud"], "Invalid value for '--log-level'"),
        (["--is-central-error-logger", "maybe"], "Invalid value for '--is-central-error-logger'"),
        (["--no-such-option"], "No such option: --no-such-option"),
    ],
)
def test_an_unparsable_option_is_a_usage_error(
    tmp_path: Path, arguments: list[str], expected: str
) -> None:
    result = run(tmp_path, "--node-name", "ship1", *arguments)

    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_value_in_the_file_names_the_file_key_and_option(tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "config.toml"
    config_file.parent.mkdir()
    config_file.write_text('NodeName = "ship1"\nDefaultMessageRetries = -5\n', encoding="utf-8")

    result = run(tmp_path)

    assert result.exit_code == 2
    assert result.stderr == (
        f"steward-otp: error: {config_file}: DefaultMessageRetries = -5 is not allowed: must be a "
        "whole number, at least 0 (set it with --default-message-retries or in the config file)\n"
    )


def test_a_malformed_file_is_a_usage_error_naming_the_line(tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "config.toml"
    config_file.parent.mkdir()
    config_file.write_text('node_name = "ship1"\nnode_name = \n', encoding="utf-8")

    result = run(tmp_path)

    assert result.exit_code == 2
    assert result.stderr.startswith(f"steward-otp: error: {config_file}: not valid TOML: ")
    assert "line 2" in result.stderr
    assert config_file.read_text(encoding="utf-8") == 'node_name = "ship1"\nnode_name = \n'


def test_warnings_about_the_file_are_printed_and_the_node_still_starts(tmp_path: Path) -> None:
    config_file = tmp_path / "etc" / "config.toml"
    config_file.parent.mkdir()
    config_file.write_text('NodeName = "ship1"\nEnableTUI = false\n', encoding="utf-8")

    result = run(tmp_path)

    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"steward-otp: warning: {config_file}: EnableTUI: Steward key ignored: "
        "the terminal UI is not part of steward-otp",
        f"{NOT_AVAILABLE}{config_file}",
    ]
    assert "EnableTUI" not in config_file.read_text(encoding="utf-8")


def test_home_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", "--node-name", "ship1"], env={"STEWARD_OTP_HOME": str(tmp_path)}
    )

    assert result.exit_code == 0
    assert (tmp_path / "etc" / "config.toml").exists()


def test_home_defaults_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STEWARD_OTP_HOME", raising=False)

    result = runner.invoke(app, ["run", "--node-name", "ship1"])

    assert result.exit_code == 0
    assert (tmp_path / "etc" / "config.toml").exists()


# -- logging ----------------------------------------------------------------------------------


def test_configure_logging_filters_by_level_and_replaces_its_previous_setup() -> None:
    stream = io.StringIO()
    configure_logging("warning", timestamps=False, stream=stream)
    configure_logging("info", timestamps=False, stream=stream)

    logging.getLogger("steward_otp.node").info("node started")
    logging.getLogger("steward_otp.node").debug("hidden")
    logging.getLogger("nats.client").info("hidden too: libraries log from warning up")

    assert stream.getvalue() == "INFO steward_otp.node: node started\n"


def test_configure_logging_can_prefix_timestamps() -> None:
    stream = io.StringIO()
    configure_logging("debug", timestamps=True, stream=stream)

    logging.getLogger("steward_otp.node").debug("tick")

    line = stream.getvalue()
    assert line.endswith(" DEBUG steward_otp.node: tick\n")
    assert line[4] == "-" and line[10] == "T"  # 2024-05-01T12:00:00.123


def test_configure_logging_refuses_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="log level 'loud' is not one of 'error'"):
        configure_logging("loud", timestamps=False)  # type: ignore[arg-type]
