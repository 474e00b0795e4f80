"""Configuration: defaults, file + overrides precedence, Steward keys, errors, folders."""

import stat
import warnings
from pathlib import Path

import attrs
import pytest

from steward_otp.config import (
    DROPPED_GO_KEYS,
    NOT_YET_AVAILABLE_KEYS,
    REQUIRED,
    SETTINGS,
    Config,
    ConfigError,
    ConfigWarning,
    is_valid_node_name,
    load_config,
    method_names_setting,
    prepare_folders,
    render_config,
    save_config,
)

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def write_config(home: Path, text: str) -> Path:
    path = home / "etc" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults and locations -------------------------------------------------------------------


def test_defaults_follow_steward_except_where_steward_otp_decided_otherwise(
    tmp_path: Path,
) -> None:
    config = Config(home=tmp_path, node_name="ship1")

    assert config.central_node_name == "central"
    assert config.broker_address == ""  # embedded broker (Steward: 127.0.0.1:4222)
    assert config.embedded_broker_port == 4222
    assert config.default_message_retries == 1
    assert config.nats_conn_opt_timeout == 20
    assert config.nats_connect_retry_interval == 10
    assert config.nats_reconnect_jitter == 0.1  # Steward: 100 ms
    assert config.nats_reconnect_jitter_tls == 1
    assert config.signature_max_age == 6 * 24 * 3600  # new: Steward's signatures had no time
    assert config.default_message_timeout == 10
    assert config.default_message_retries == 1
    assert config.default_method_timeout == 10
    assert config.error_message_timeout == 60
    assert config.error_message_retries == 10
    assert config.keep_publishers_alive_for == 10
    assert config.start_pub_hello == 30
    assert config.dedupe_retention_seconds == 7 * 24 * 3600
    assert config.compression == "lz4"
    assert config.compress_threshold_bytes == 1024
    assert config.log_level == "info"  # Steward: debug
    assert config.log_console_timestamps is False
    assert config.is_central_error_logger is None  # auto
    assert config.enable_socket and config.enable_read_folder
    assert not (config.enable_signature_check or config.enable_acl_check or config.is_central_auth)
    assert config.central_public_key == ""
    assert config.tcp_listener == config.http_listener == config.prom_host_and_port == ""
    assert config.root_ca_path is None and config.nkey_seed_file is None
    assert config.disabled_methods == ""  # every method with a handler is served
    assert not [s.name for s in SETTINGS if s.name.startswith("start_sub_req_")]


def test_folders_are_under_home_by_default(tmp_path: Path) -> None:
    config = Config(home=tmp_path, node_name="ship1")

    assert config.etc_dir == tmp_path / "etc"
    assert config.config_file == tmp_path / "etc" / "config.toml"
    assert config.var_dir == tmp_path / "var"
    assert config.db_dir == tmp_path / "var" / "lib"
    assert config.data_dir == tmp_path / "data"
    assert config.tmp_dir == tmp_path / "tmp"
    assert config.socket_path == tmp_path / "tmp" / "steward.sock"
    assert config.control_socket_path == tmp_path / "tmp" / "control.sock"
    assert config.readfolder_dir == tmp_path / "readfolder"
    assert config.startup_dir == tmp_path / "startup"


def test_relative_folders_resolve_against_home_and_absolute_ones_stay(tmp_path: Path) -> None:
    config = Config(
        home=tmp_path,
        node_name="ship1",
        subscribers_data_folder=Path("/srv/steward/data"),
        socket_folder=Path("run/sockets"),
    )

    assert config.data_dir == Path("/srv/steward/data")
    assert config.socket_path == tmp_path / "run" / "sockets" / "steward.sock"


@pytest.mark.parametrize(
    ("node_name", "setting", "expected"),
    [
        ("central", None, True),
        ("ship1", None, False),
        ("ship1", True, True),
        ("central", False, False),
    ],
)
def test_central_error_logger_is_automatic_on_the_central_node_unless_set(
    tmp_path: Path, node_name: str, setting: bool | None, expected: bool
) -> None:
    config = Config(home=tmp_path, node_name=node_name, is_central_error_logger=setting)

    assert config.acts_as_central_error_logger is expected


# -- precedence -------------------------------------------------------------------------------


def test_without_a_file_the_overrides_and_defaults_make_the_config(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"node_name": "ship1"})

    assert config == Config(home=tmp_path, node_name="ship1")


def test_file_values_replace_the_defaults(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        'node_name = "ship1"\ndefault_message_retries = 50\nlog_level = "debug"\n'
        'socket_folder = "/run/steward"\ndisabled_methods = "REQPing"\n',
    )

    config = load_config(tmp_path, {})

    assert config.node_name == "ship1"
    assert config.default_message_retries == 50
    assert config.log_level == "debug"
    assert config.tmp_dir == Path("/run/steward")
    assert config.disabled_methods == "REQPing"
    assert config.central_node_name == "central"


def test_overrides_win_over_the_file_and_persist_when_written_back(tmp_path: Path) -> None:
    write_config(
        tmp_path, 'node_name = "ship1"\ndefault_message_retries = 50\nstart_pub_hello = 5\n'
    )

    config = load_config(tmp_path, {"default_message_retries": 70, "node_name": "ship2"})
    save_config(config)
    reloaded = load_config(tmp_path, {})

    assert (config.node_name, config.default_message_retries, config.start_pub_hello) == (
        "ship2",
        70,
        5,
    )
    assert reloaded == config


def test_an_override_of_none_keeps_the_files_value(tmp_path: Path) -> None:
    write_config(tmp_path, 'node_name = "ship1"\ntcp_listener = ":8888"\n')

    config = load_config(tmp_path, {"node_name": None, "tcp_listener": None})

    assert (config.node_name, config.tcp_listener) == ("ship1", ":8888")


def test_a_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("."), {"node_name": "ship1"})

    assert config.home == tmp_path
    assert config.home.is_absolute()


@pytest.mark.parametrize(
    ("raw", "expected"), [("auto", None), (None, None), ("true", True), (False, False)]
)
def test_central_error_logger_override_accepts_auto(
    tmp_path: Path, raw: object, expected: bool | None
) -> None:
    write_config(tmp_path, 'node_name = "ship1"\nis_central_error_logger = "auto"\n')

    config = load_config(tmp_path, {"is_central_error_logger": raw})

    assert config.is_central_error_logger is expected


# -- Steward's keys ---------------------------------------------------------------------------

STEWARD_CONFIG = """\
# Steward wrote every key with a comment line; this is one of its files after a start.
# ConfigFolder
ConfigFolder = "./etc/"
# RingBufferPersistStore
RingBufferPersistStore = true
RingBufferSize = 2000
SocketFolder = "./tmp"
ReadFolder = "./readfolder"
EnableReadFolder = true
TCPListener = ""
HTTPListener = "127.0.0.1:8091"
DatabaseFolder = "./var/lib"
NodeName = "ship7"
BrokerAddress = "10.0.0.5:4222"
NatsConnOptTimeout = 20
NatsConnectRetryInterval = 10
NatsReconnectJitter = 250
NatsReconnectJitterTLS = 2
REQKeysRequestUpdateInterval = 120
REQAclRequestUpdateInterval = 90
ProfilingPort = ""
PromHostAndPort = ":2111"
DefaultMessageTimeout = 10
DefaultMessageRetries = 3
DefaultMethodTimeout = 15
SubscribersDataFolder = "./data"
CentralNodeName = "hq"
RootCAPath = ""
NkeySeedFile = "/etc/steward/seed.txt"
NkeyFromED25519SSHKeyFile = ""
ExposeDataFolder = ""
ErrorMessageTimeout = 60
ErrorMessageRetries = 10
Compression = ""
Serialization = ""
SetBlockProfileRate = 0
EnableSocket = true
EnableTUI = false
EnableSignatureCheck = true
EnableAclCheck = false
IsCentralAuth = false
EnableDebug = false
LogLevel = "warning"
LogConsoleTimestamps = true
KeepPublishersAliveFor = 10
StartPubREQHello = 60
EnableKeyUpdates = true
EnableAclUpdates = false
IsCentralErrorLogger = false
StartSubREQHello = true
StartSubREQToFileAppend = true
StartSubREQToFile = true
StartSubREQToFileNACK = true
StartSubREQCopySrc = true
StartSubREQCopyDst = true
StartSubREQPing = true
StartSubREQPong = true
StartSubREQCliCommand = false
StartSubREQToConsole = true
StartSubREQHttpGet = true
StartSubREQHttpGetScheduled = true
StartSubREQTailFile = true
StartSubREQCliCommandCont = true
"""


def test_a_stewards_config_file_is_read_with_warnings_for_dropped_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, STEWARD_CONFIG)

    with pytest.warns(ConfigWarning) as caught:
        config = load_config(tmp_path, {})

    assert config.node_name == "ship7"
    assert config.central_node_name == "hq"
    assert config.broker_address == "10.0.0.5:4222"
    assert config.http_listener == "127.0.0.1:8091"
    assert config.prom_host_and_port == ":2111"
    assert config.nats_reconnect_jitter == 0.25  # milliseconds in Steward
    assert config.nats_reconnect_jitter_tls == 2
    assert (config.default_message_retries, config.default_method_timeout) == (3, 15)
    assert config.nkey_seed_file == Path("/etc/steward/seed.txt")
    assert config.root_ca_path is None
    assert config.compression == "lz4"  # Steward's "" is its default, not a choice
    assert config.enable_signature_check is True
    assert config.log_level == "warning"
    assert config.log_console_timestamps is True
    assert config.start_pub_hello == 60
    assert config.is_central_error_logger is False
    assert config.disabled_methods == "REQCliCommand"  # StartSubREQCliCommand = false
    assert config.db_dir == tmp_path / "var" / "lib"
    assert config.tmp_dir == tmp_path / "tmp"
    messages = [str(w.message) for w in caught]
    dropped_in_file = [key for key in DROPPED_GO_KEYS if f"\n{key} =" in STEWARD_CONFIG]
    not_yet = [key for key in NOT_YET_AVAILABLE_KEYS if f"\n{key} =" in STEWARD_CONFIG]
    assert len(dropped_in_file) == 8 and not not_yet  # every feature is built
    assert len(messages) == len(dropped_in_file) + len(not_yet)
    for key in dropped_in_file:
        assert any(m.startswith(f"{path}: {key}: Steward key ignored: ") for m in messages)
    for key in not_yet:
        assert any(m.startswith(f"{path}: {key}: ignored, not available yet: ") for m in messages)


def test_a_retired_key_is_ignored_with_a_warning_saying_why(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'node_name = "ship1"\nring_buffer_size = 50\n')

    with pytest.warns(ConfigWarning) as caught:
        config = load_config(tmp_path, {})

    assert [str(w.message) for w in caught] == [
        f"{path}: ring_buffer_size: ignored, no longer a setting: accepted messages go "
        "straight to the durable outbox; there is no in-memory buffer to size"
    ]
    assert "ring_buffer_size" not in save_config(config).read_text(encoding="utf-8")


def test_a_stewards_file_is_rewritten_with_steward_otp_keys(tmp_path: Path) -> None:
    write_config(tmp_path, STEWARD_CONFIG)
    with pytest.warns(ConfigWarning):
        config = load_config(tmp_path, {})

    text = save_config(config).read_text(encoding="utf-8")

    assert "NodeName" not in text
    assert 'node_name = "ship7"' in text
    assert load_config(tmp_path, {}) == config


@pytest.mark.parametrize(("steward_value", "warned"), [("z", True), ("g", True), ("", False)])
def test_stewards_compression_choices_become_lz4(
    tmp_path: Path, recwarn: pytest.WarningsRecorder, steward_value: str, warned: bool
) -> None:
    path = write_config(tmp_path, f'NodeName = "ship1"\nCompression = "{steward_value}"\n')

    config = load_config(tmp_path, {})

    assert config.compression == "lz4"
    assert [str(w.message) for w in recwarn if w.category is ConfigWarning] == (
        [f"{path}: Compression = '{steward_value}': zstd and gzip are not supported; using 'lz4'"]
        if warned
        else []
    )


def test_the_same_field_under_both_spellings_must_agree(tmp_path: Path) -> None:
    write_config(tmp_path, 'node_name = "ship1"\nNodeName = "ship1"\n')
    assert load_config(tmp_path, {}).node_name == "ship1"

    path = write_config(tmp_path, 'node_name = "ship1"\nNodeName = "ship2"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})

    assert str(caught.value) == (
        f"{path}: keys 'node_name' and 'NodeName' both set node_name, to different values; "
        "keep one of them"
    )


def test_unknown_keys_are_ignored_with_a_warning_that_suggests_the_right_key(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path, 'node_name = "ship1"\ndefault_mesage_retries = 5\n[extras]\na = 1\n'
    )

    with pytest.warns(ConfigWarning) as caught:
        config = load_config(tmp_path, {})

    assert config.default_message_retries == 1
    assert [str(w.message) for w in caught] == [
        f"{path}: default_mesage_retries: unknown key ignored "
        "(did you mean 'default_message_retries'?)",
        f"{path}: extras: unknown key ignored",
    ]


# -- errors -----------------------------------------------------------------------------------


def test_missing_node_name_is_an_error_naming_the_field_and_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'central_node_name = "hq"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})

    assert caught.value.field == "node_name"
    assert (
        str(caught.value) == f"node_name is required: it was not given and {path} does not set it"
    )


def test_malformed_toml_is_an_error_naming_the_file_and_the_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'node_name = "ship1"\ndefault_message_retries = = 3\n')

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})

    message = str(caught.value)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in message


def test_a_file_that_is_not_utf8_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    path.write_bytes(b'node_name = "\xff"\n')

    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load_config(tmp_path, {})

    assert str(caught.value).startswith(str(path))


def test_an_unknown_override_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown configuration field 'ring_size'"):
        load_config(tmp_path, {"node_name": "ship1", "ring_size": 5})


BAD_VALUES = [
    ("node_name", "ship 1", "NATS subject token sequence"),
    ("node_name", "ship.*", "NATS subject token sequence"),
    ("node_name", "../etc", "NATS subject token sequence"),
    ("central_node_name", "hq.", "no empty token"),
    ("log_level", "verbose", "must be one of 'error', 'warning', 'info', 'debug'"),
    ("compression", "zstd", "must be one of 'lz4', 'none'"),
    ("embedded_broker_port", 0, "must be a port number from 1 to 65535"),
    ("embedded_broker_port", 70000, "must be a port number from 1 to 65535"),
    ("default_message_retries", 2.5, "must be a whole number"),
    ("default_message_retries", -1, "must be a whole number, at least 0"),
    ("default_method_timeout", 0, "must be a number of seconds, greater than 0"),
    ("default_message_timeout", 2.5, "must be a whole number of seconds, at least 1"),
    ("error_message_timeout", 0, "must be a whole number of seconds, at least 1"),
    ("nats_reconnect_jitter", -0.5, "must be a number of seconds, at least 0"),
    ("start_pub_hello", -1, "must be a number of seconds, at least 0"),
    ("dedupe_retention_seconds", 0, "must be a number of seconds, greater than 0"),
    ("keep_publishers_alive_for", float("inf"), "must be a number of seconds, greater than 0"),
    ("enable_socket", "yes", "must be true or false"),
    ("is_central_error_logger", "maybe", "must be true, false or 'auto'"),
    ("tcp_listener", "8080", "must be empty (off) or HOST:PORT"),
    ("http_listener", "localhost:99999", "must be empty (off) or HOST:PORT"),
    ("broker_address", "nats://host", "must be empty (use the embedded broker) or HOST:PORT"),
    ("broker_address", "http://host:4222", "must be empty (use the embedded broker) or HOST:PORT"),
    ("socket_folder", "", "must be a non-empty folder path"),
    ("database_folder", 5, "must be a non-empty folder path"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD_VALUES)
def test_a_bad_override_names_the_field_the_value_and_what_is_allowed(
    tmp_path: Path, field: str, value: object, allowed: str
) -> None:
    overrides = {"node_name": "ship1", field: value}

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, overrides)

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field} = {value!r} is not allowed: ")
    assert allowed in str(caught.value)


@pytest.mark.parametrize(("field", "value", "allowed"), BAD_VALUES)
def test_a_bad_file_value_names_the_file_the_key_the_value_and_what_is_allowed(
    tmp_path: Path, field: str, value: object, allowed: str
) -> None:
    literal = f'"{value}"' if isinstance(value, str) else str(value)
    name_line = "" if field == "node_name" else 'node_name = "ship1"\n'
    path = write_config(tmp_path, f"{name_line}{field} = {literal}\n")

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})

    assert caught.value.field == field
    assert str(caught.value).startswith(f"{path}: {field} = {value!r} is not allowed: ")
    assert allowed in str(caught.value)


def test_a_bad_value_under_a_steward_key_is_reported_under_that_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'NodeName = "ship1"\nDefaultMessageRetries = -5\n')

    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})

    assert str(caught.value) == (
        f"{path}: DefaultMessageRetries = -5 is not allowed: must be a whole number, at least 0"
    )


def test_an_override_fixes_a_bad_file_value(tmp_path: Path) -> None:
    write_config(tmp_path, 'node_name = "ship1"\ndefault_message_retries = -5\n')

    assert load_config(tmp_path, {"default_message_retries": 10}).default_message_retries == 10


def test_constructing_a_config_directly_validates_it(tmp_path: Path) -> None:
    config = Config(home=tmp_path, node_name="ship1")

    with pytest.raises(ConfigError, match=r"^default_message_retries = -1 is not allowed"):
        attrs.evolve(config, default_message_retries=-1)


@pytest.mark.parametrize(
    "name", ["ship1", "central", "ship.1", "eu-west_2.ship@7", "Ship1", "ø.ship"]
)
def test_valid_node_names(name: str) -> None:
    assert is_valid_node_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "ship 1", "ship\t1", "ship*", ">", "ship.>", "a..b", ".a", "a.", "a/b", "a\\b", "a\x00"],
)
def test_invalid_node_names(name: str) -> None:
    assert not is_valid_node_name(name)


# -- saving -----------------------------------------------------------------------------------


def test_every_setting_round_trips_through_the_file(tmp_path: Path) -> None:
    config = Config(
        home=tmp_path,
        node_name="ship.1",
        broker_address="tls://nats.example.org:4443",
        nats_reconnect_jitter=0.25,
        root_ca_path=Path("certs/ca.pem"),
        socket_folder=Path("/run/steward"),
        tcp_listener="[::1]:9000",
        compression="none",
        is_central_error_logger=True,
        start_pub_hello=0,
        dedupe_retention_seconds=3600.5,
        disabled_methods="REQTailFile,REQCliCommand",
        log_level="error",
    )

    save_config(config)

    assert load_config(tmp_path, {}) == config


@pytest.mark.parametrize("setting", [None, True, False])
def test_central_error_logger_round_trips_including_auto(
    tmp_path: Path, setting: bool | None
) -> None:
    config = Config(home=tmp_path, node_name="ship1", is_central_error_logger=setting)

    save_config(config)

    assert load_config(tmp_path, {}).is_central_error_logger is setting


def test_the_written_file_explains_every_key_with_a_comment(tmp_path: Path) -> None:
    config = Config(home=tmp_path, node_name="ship1")

    lines = render_config(config).splitlines()

    keys = [line.split(" = ")[0] for line in lines if line and not line.startswith("#")]
    assert keys == [s.name for s in SETTINGS]
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[index - 1].startswith("# "), line
    assert "# Seconds the ids of received messages are remembered" in "\n".join(lines)


def test_save_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_config(tmp_path, 'node_name = "old"\n')
    config = Config(home=tmp_path, node_name="new")

    path = save_config(config)

    assert path == tmp_path / "etc" / "config.toml"
    assert 'node_name = "new"' in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]


def test_save_reports_a_path_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "etc").write_text("a file where the folder should be")
    config = Config(home=tmp_path, node_name="ship1")

    with pytest.raises(ConfigError, match=r"^cannot write .*etc"):
        save_config(config)


def test_a_failed_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "etc" / "config.toml").mkdir(parents=True)
    config = Config(home=tmp_path, node_name="ship1")

    with pytest.raises(ConfigError, match=r"^cannot write .*config.toml"):
        save_config(config)

    assert [p.name for p in (tmp_path / "etc").iterdir()] == ["config.toml"]


# -- folders ----------------------------------------------------------------------------------


def test_prepare_folders_creates_the_node_folders_without_access_for_others(
    tmp_path: Path,
) -> None:
    config = Config(home=tmp_path / "node", node_name="ship1")

    prepare_folders(config)

    for folder in ("etc", "var", "var/lib", "data", "tmp"):
        path = tmp_path / "node" / folder
        assert path.is_dir(), folder
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, folder
    assert not (tmp_path / "node" / "readfolder").exists()  # created by the read-folder input


def test_prepare_folders_creates_configured_absolute_folders_and_keeps_existing_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "node" / "data").mkdir(parents=True)
    (tmp_path / "node" / "data" / "kept.txt").write_text("x")
    config = Config(
        home=tmp_path / "node",
        node_name="ship1",
        database_folder=tmp_path / "elsewhere" / "db",
    )

    prepare_folders(config)
    prepare_folders(config)  # again: nothing to do, no error

    assert (tmp_path / "elsewhere" / "db").is_dir()
    assert (tmp_path / "node" / "data" / "kept.txt").read_text() == "x"


def test_prepare_folders_names_the_folder_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the folder should be")
    config = Config(home=tmp_path, node_name="ship1")

    with pytest.raises(ConfigError) as caught:
        prepare_folders(config)

    assert str(caught.value) == f"cannot create folder {tmp_path / 'data'}: a file is in the way"


# -- documentation ----------------------------------------------------------------------------


def test_the_reference_documents_every_setting_and_every_dropped_steward_key() -> None:
    text = DOCS.read_text(encoding="utf-8")

    for setting in SETTINGS:
        assert f"`{setting.name}`" in text, setting.name
        assert f"`{setting.flag}`" in text, setting.flag
        if setting.go_key:
            assert f"`{setting.go_key}`" in text, setting.go_key
        if setting.default is not REQUIRED:
            assert setting.default_text in text, setting.name
    for key in DROPPED_GO_KEYS:
        assert f"`{key}`" in text, key


def test_the_start_sub_keys_of_steward_and_earlier_versions_become_disabled_methods(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path,
        'node_name = "ship1"\ndisabled_methods = "REQTailFile"\n'
        "start_sub_req_cli_command = false\nStartSubREQHttpGet = false\n"
        "StartSubREQPing = true\nstart_sub_req_hello = true\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_config(tmp_path, {})

    assert method_names_setting(config.disabled_methods) == {
        "REQTailFile",
        "REQCliCommand",
        "REQHttpGet",
    }
    text = save_config(config).read_text(encoding="utf-8")
    keys = [line.split("=")[0].strip() for line in text.splitlines() if "=" in line]
    assert not [k for k in keys if k.startswith(("start_sub", "StartSub"))]
    assert load_config(tmp_path, {}) == config

    write_config(tmp_path, 'node_name = "ship1"\nStartSubREQPing = "no"\n')
    with pytest.raises(ConfigError, match=f"{path}: StartSubREQPing = 'no' is not allowed"):
        load_config(tmp_path, {})


@pytest.mark.parametrize("value", ["REQ Ping", "REQPing;rm", "REQPing,,a.b"])
def test_disabled_methods_must_be_method_names(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="method names separated by commas"):
        load_config(tmp_path, {"node_name": "ship1", "disabled_methods": value})
