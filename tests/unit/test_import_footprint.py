"""Importing the node and the CLI loads no optional-feature library; the daemon no CLI library.

hypercorn (HTTP input, metrics server), httpx (REQHttpGet) and prometheus_client (metrics)
are imported only when the feature that needs them is switched on or first used, so an idle
``steward-otp run`` neither pays their start-up time nor holds their memory. And once
``steward-otp run`` has parsed its options it execs a fresh interpreter for the node, which
never loads typer (nor the pydantic typer loads to convert option values). Checked in fresh
interpreters: the test process itself has loaded all of them through other tests.
"""

import ast
import subprocess
import sys
from pathlib import Path

from steward_otp.cli import _daemon_argv
from steward_otp.config import load_config, save_config

OPTIONAL = ("hypercorn", "httpx", "prometheus_client")

PROBE = (
    "import steward_otp.node, steward_otp.cli.program, sys; "
    "print(sorted(m for m in sys.modules if m.split('.')[0] in {'hypercorn','httpx',"
    "'prometheus_client'}))"
)


def _loaded(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert isinstance(loaded, list)
    return loaded


def test_node_and_cli_import_no_optional_feature_library() -> None:
    assert _loaded(PROBE) == []


def test_a_node_without_metrics_builds_no_prometheus_registry() -> None:
    """Node() makes its NodeMetrics; the registry (and prometheus_client) only on first use."""
    code = (
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from steward_otp.config import load_config\n"
        "from steward_otp.node import Node\n"
        "with tempfile.TemporaryDirectory() as home:\n"
        "    node = Node(load_config(Path(home), {'node_name': 'ship1'}))\n"
        f"    print(sorted(m for m in sys.modules if m.split('.')[0] in {set(OPTIONAL)!r}))\n"
    )
    assert _loaded(code) == []


def test_the_daemon_loads_no_command_line_machinery() -> None:
    """`steward-otp run` execs into steward_otp.daemon.main: no typer, no pydantic there; and
    no ``cryptography`` (messages are signed with libsodium; only reading an OpenSSH key for
    ``nkey_from_ed25519_ssh_key_file`` loads it)."""
    code = (
        "import steward_otp.daemon, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{{'typer', 'click', 'pydantic', 'pydantic_core', 'cryptography', *{OPTIONAL!r}}}))"
    )
    assert _loaded(code) == []


def test_run_hands_the_saved_configuration_to_a_fresh_interpreter(tmp_path: Path) -> None:
    home = tmp_path / "node"
    config = load_config(home, {"node_name": "ship1"})
    save_config(config)
    argv = _daemon_argv(config)
    assert argv is not None and argv[0] == sys.executable
    assert argv[-2:] == ["--home", str(config.home)]
    # The same command line on a home without a configuration: daemon.main runs, and
    # refuses it as a usage error.
    empty = tmp_path / "empty"
    result = subprocess.run(
        [*argv[:-1], str(empty)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "steward-otp: error: node_name is required" in result.stderr


def test_run_stays_in_process_when_the_file_does_not_read_back(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"node_name": "ship1"})  # never saved
    assert _daemon_argv(config) is None


def test_the_command_line_loads_neither_trio_nor_a_web_framework() -> None:
    """`steward-otp` answers its quick commands (version, web token, config, --help) without
    the node's machinery: trio, the NATS client and the web framework load only in the
    commands that use them (and `run` execs a fresh daemon)."""
    code = (
        "import steward_otp.cli.program, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{{'trio', 'trio_asyncio', 'nats', 'starlette', 'cryptography', *{OPTIONAL!r}}}))"
    )
    assert _loaded(code) == []
