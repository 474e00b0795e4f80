"""Settings from STEWARD_OTP_<NAME> environment variables: honoured by `run`, `config check`
and `config show` and by the daemon, in the order option > environment > file > default,
never written back to config.toml; a bad value names the variable, the value and what is
allowed. And `run --help` grouped by topic."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from steward_otp import config_env
from steward_otp.cli import app, program
from steward_otp.config import SETTINGS, Config, load_config, save_config

runner = CliRunner()


@pytest.fixture(autouse=True)
def started(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """`run` stops where the node would start; the configurations it would start with."""
    configs: list[Config] = []

    def start(config: Config) -> int:
        configs.append(config)
        return 0

    monkeypatch.setattr(program, "_start_node", start)
    for variable in list(os.environ):
        if variable.startswith(config_env.PREFIX):
            monkeypatch.delenv(variable)
    return configs


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    project = logging.getLogger("steward_otp")
    saved = (list(root.handlers), root.level, project.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    project.setLevel(saved[2])


def run(home: Path, *args: str) -> Result:
    return runner.invoke(app, ["run", "--home", str(home), "--broker-address", "hub:4222", *args])


def file_values(home: Path) -> dict[str, object]:
    return tomllib.loads((home / "etc" / "config.toml").read_text(encoding="utf-8"))


def test_every_setting_has_a_variable_named_after_it() -> None:
    names = [config_env.env_name(s) for s in SETTINGS]
    assert config_env.env_name("node_name") == "STEWARD_OTP_NODE_NAME"
    assert config_env.env_name("broker_address") == "STEWARD_OTP_BROKER_ADDRESS"
    assert len(set(names)) == len(names) and "STEWARD_OTP_HOME" not in names


def test_run_takes_settings_from_the_environment_and_does_not_write_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Config]
) -> None:
    save_config(load_config(tmp_path, {"node_name": "ship1", "default_message_retries": 4}))
    monkeypatch.setenv("STEWARD_OTP_NODE_NAME", "ship7")
    monkeypatch.setenv("STEWARD_OTP_ENABLE_SOCKET", "false")
    monkeypatch.setenv("STEWARD_OTP_DELIVERY", "jetstream")
    monkeypatch.setenv("STEWARD_OTP_IS_CENTRAL_ERROR_LOGGER", "yes")
    monkeypatch.setenv("STEWARD_OTP_DEFAULT_METHOD_TIMEOUT", "2.5")

    result = run(tmp_path)

    assert result.exit_code == 0, result.output
    [config] = started
    assert config.node_name == "ship7" and not config.enable_socket
    assert config.delivery == "jetstream" and config.is_central_error_logger is True
    assert config.default_method_timeout == 2.5
    assert config.default_message_retries == 4  # from the file
    written = file_values(tmp_path)
    assert written["node_name"] == "ship1" and written["enable_socket"] is True
    assert written["delivery"] == "core" and written["broker_address"] == "hub:4222"
    assert written["default_method_timeout"] == 10.0


def test_option_beats_environment_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Config]
) -> None:
    def retries(*args: str) -> int:
        result = run(tmp_path, "--node-name", "ship1", *args)
        assert result.exit_code == 0, result.output
        return started[-1].default_message_retries

    assert retries() == 1  # the default
    save_config(load_config(tmp_path, {"node_name": "ship1", "default_message_retries": 5}))
    assert retries() == 5  # the file
    monkeypatch.setenv("STEWARD_OTP_DEFAULT_MESSAGE_RETRIES", "7")
    assert retries() == 7  # the environment
    assert file_values(tmp_path)["default_message_retries"] == 5
    assert retries("--default-message-retries", "9") == 9  # the option
    assert file_values(tmp_path)["default_message_retries"] == 9  # an option persists
    # The daemon reads the file and the environment: the variable the option overrode is
    # gone from the environment it inherits, so it reads the option's value.
    assert "STEWARD_OTP_DEFAULT_MESSAGE_RETRIES" not in os.environ
    assert config_env.load_effective(tmp_path) == started[-1]


def test_the_node_name_may_come_from_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Config]
) -> None:
    monkeypatch.setenv("STEWARD_OTP_NODE_NAME", "edge9")

    result = run(tmp_path)

    assert result.exit_code == 0, result.output
    assert started[-1].node_name == "edge9"
    assert "not written" in result.stderr and "STEWARD_OTP_" in result.stderr
    assert not (tmp_path / "etc" / "config.toml").exists()


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("STEWARD_OTP_DEFAULT_MESSAGE_RETRIES", "many", "must be a whole number"),
        (
            "STEWARD_OTP_ERROR_MESSAGE_TIMEOUT",
            "1.5",
            "must be a whole number of seconds, at least 1",
        ),
        ("STEWARD_OTP_EMBEDDED_BROKER_PORT", "70000", "must be a port number"),
        ("STEWARD_OTP_DEFAULT_METHOD_TIMEOUT", "soon", "must be a number"),
        ("STEWARD_OTP_ENABLE_SOCKET", "maybe", "must be true or false"),
        ("STEWARD_OTP_IS_CENTRAL_ERROR_LOGGER", "perhaps", "must be true, false or auto"),
        ("STEWARD_OTP_DELIVERY", "fast", "must be one of 'core', 'jetstream'"),
        ("STEWARD_OTP_NODE_NAME", "a b", "allowed"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(variable, value)
    for args in (["run", "--home", str(tmp_path)], ["config", "check", "--home", str(tmp_path)]):
        if variable != "STEWARD_OTP_NODE_NAME":
            monkeypatch.setenv("STEWARD_OTP_NODE_NAME", "ship1")

        result = runner.invoke(app, args)

        assert result.exit_code == 2, result.output
        assert f"{variable} = {value!r} is not allowed: " in result.stderr, result.stderr
        assert allowed in result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "etc").exists()


def test_an_option_wins_over_a_bad_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Config]
) -> None:
    monkeypatch.setenv("STEWARD_OTP_DEFAULT_MESSAGE_RETRIES", "many")
    result = run(tmp_path, "--node-name", "ship1", "--default-message-retries", "3")
    assert result.exit_code == 0, result.output
    assert started[-1].default_message_retries == 3


def test_an_unknown_variable_is_a_warning_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: list[Config]
) -> None:
    monkeypatch.setenv("STEWARD_OTP_NODENAME", "ship1")
    result = run(tmp_path, "--node-name", "ship1")
    assert result.exit_code == 0, result.output
    assert "STEWARD_OTP_NODENAME: names no setting, ignored" in result.stderr
    assert "did you mean STEWARD_OTP_NODE_NAME?" in result.stderr


def test_config_check_and_show_read_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEWARD_OTP_NODE_NAME", "ship4")
    monkeypatch.setenv("STEWARD_OTP_LOG_LEVEL", "debug")

    check = runner.invoke(app, ["config", "check", "--home", str(tmp_path)])
    show = runner.invoke(app, ["config", "show", "--home", str(tmp_path)])
    as_json = runner.invoke(app, ["config", "show", "--home", str(tmp_path), "--json"])

    assert check.exit_code == 0 and "(node ship4)" in check.stdout
    assert "# node_name: from the environment (STEWARD_OTP_NODE_NAME)" in show.stdout
    assert 'log_level = "debug"' in show.stdout
    assert '"node_name": "ship4"' in as_json.stdout
    assert not (tmp_path / "etc").exists()  # nothing written


def test_the_daemon_starts_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_config(load_config(tmp_path, {"node_name": "ship1"}))
    monkeypatch.setenv("STEWARD_OTP_LOG_LEVEL", "debug")
    config = config_env.load_effective(tmp_path)
    assert config.log_level == "debug"
    argv = program._daemon_argv(config)  # exec the daemon: it reads the same
    assert argv is not None and argv[-2:] == ["--home", str(config.home)]
    monkeypatch.delenv("STEWARD_OTP_LOG_LEVEL")
    assert program._daemon_argv(config) is None  # it would not: run it in process


# -- run --help by topic -----------------------------------------------------------------------


def test_run_help_groups_the_options_by_topic_and_names_their_variables() -> None:
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    headings = [line[:-1] for line in lines if line and not line[0].isspace() and line[-1] == ":"]
    sections = list(dict.fromkeys(s.section for s in SETTINGS))
    assert headings == ["Home", *sections, "Options"]
    for setting in SETTINGS:
        [line] = [n for n, text in enumerate(lines) if text.lstrip().startswith(setting.flag + " ")]
        section = max(n for n, text in enumerate(lines[:line]) if text[:-1] in headings)
        assert lines[section] == f"{setting.section}:", setting.name
        end = min(n for n, text in enumerate(lines) if n > line and text.startswith("  -"))
        assert config_env.env_name(setting) in "".join(t.strip() for t in lines[line:end])
    assert "STEWARD_OTP_<NAME>" in result.stdout
    assert "Options:" in lines and "--help" in lines[-1]


def test_variables_are_parsed_as_the_command_line_spells_values() -> None:
    environ = {
        "STEWARD_OTP_NODE_NAME": "ship1",
        "STEWARD_OTP_ENABLE_READ_FOLDER": "Off",
        "STEWARD_OTP_ROOT_CA_PATH": "",
        "STEWARD_OTP_HOME": "/ignored/here",
        "OTHER": "x",
    }
    assert config_env.env_settings(environ) == {
        "node_name": "ship1",
        "enable_read_folder": False,
        "root_ca_path": "",
    }


def test_the_inspection_commands_find_the_sockets_where_the_environment_puts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steward_otp.cli.inspection import socket_folder  # noqa: PLC0415

    save_config(load_config(tmp_path, {"node_name": "ship1", "socket_folder": Path("run")}))
    assert socket_folder(tmp_path) == tmp_path / "run"
    monkeypatch.setenv("STEWARD_OTP_SOCKET_FOLDER", str(tmp_path / "socks"))
    assert socket_folder(tmp_path) == tmp_path / "socks"  # as the daemon reads it
    monkeypatch.setenv("STEWARD_OTP_SOCKET_FOLDER", "sockets")
    assert socket_folder(tmp_path) == tmp_path / "sockets"
    assert config_env.load_effective(tmp_path).tmp_dir == tmp_path / "sockets"


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("--error-message-timeout", "1.5", "must be a whole number of seconds, at least 1"),
        ("--default-message-timeout", "2.5", "must be a whole number of seconds, at least 1"),
        ("--embedded-broker-port", "80.5", "must be a port number from 1 to 65535"),
        ("--default-message-retries", "many", "'many' is not a whole number"),
    ],
)
def test_an_integer_option_that_is_not_whole_is_refused_as_the_file_would_refuse_it(
    tmp_path: Path, option: str, value: str, allowed: str, started: list[Config]
) -> None:
    result = run(tmp_path, "--node-name", "a", option, value)

    assert result.exit_code == 2, result.output
    assert allowed in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "etc" / "config.toml").exists()
    assert started == []


def test_an_integer_option_given_as_a_whole_float_is_that_integer(
    tmp_path: Path, started: list[Config]
) -> None:
    result = run(tmp_path, "--node-name", "a", "--default-message-retries", "4.0")

    assert result.exit_code == 0, result.output
    assert started[-1].default_message_retries == 4
    assert file_values(tmp_path)["default_message_retries"] == 4
